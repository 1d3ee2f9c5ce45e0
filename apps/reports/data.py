"""The demo's data set: synthetic monthly sales per region and product.

Generated, not stored, from a random generator seeded by the month, so a report asked for twice (or
built by another worker process) has the same figures: reports are reproducible and testable.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

REGIONS = ("North", "South", "East", "West")
UNIT_PRICES = {"Widget": Decimal("4.50"), "Gadget": Decimal("12.00"), "Gizmo": Decimal("27.90")}
FIRST_YEAR, LAST_YEAR = 2000, 2099


@dataclass(frozen=True, slots=True)
class Sale:
    """Sales of one product in one region over one month."""

    month: date
    region: str
    product: str
    units: int
    revenue: Decimal


def monthly_sales(year: int, month: int) -> list[Sale]:
    """One row per region and product: a seasonal curve (peaking in June) with seeded noise.

    A string seed is hashed the same way in every process, whatever PYTHONHASHSEED says.
    """
    rng = random.Random(f"sales-{year}-{month:02d}")
    season = 1 + 0.3 * math.sin((month - 3) * math.pi / 6)
    first_day = date(year, month, 1)
    sales = []
    for region in REGIONS:
        for product, price in UNIT_PRICES.items():
            units = round(rng.randint(80, 160) * season)
            sales.append(Sale(first_day, region, product, units, price * units))
    return sales
