"""The form a user requests a report with."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone

from apps.reports.data import FIRST_YEAR, LAST_YEAR
from apps.reports.models import Report

MAX_ACTIVE_REPORTS = 3


def last_year() -> int:
    return timezone.localdate().year - 1


class ReportForm(forms.ModelForm):
    """Year and months of the report. Bind it to `Report(owner=user)`: it refuses a new report while
    the owner already has MAX_ACTIVE_REPORTS waiting or running, so nobody can flood the queue."""

    year = forms.IntegerField(
        min_value=FIRST_YEAR,
        max_value=LAST_YEAR,
        initial=last_year,
        help_text=f"Any year from {FIRST_YEAR} to {LAST_YEAR}: the demo's sales figures "
        "are made up.",
    )
    months = forms.IntegerField(
        min_value=1,
        max_value=12,
        initial=12,
        help_text="How many months from January: 1 (January only) to 12.",
    )

    class Meta:
        model = Report
        fields = ["year", "months"]

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()
        owner = self.instance.owner
        if owner.reports.filter(status__in=Report.ACTIVE).count() >= MAX_ACTIVE_REPORTS:
            raise forms.ValidationError(
                "You already have %(count)d reports in progress: wait for one to finish, or "
                "cancel one.",
                code="too_many_active",
                params={"count": MAX_ACTIVE_REPORTS},
            )
        return cleaned_data
