"""Write a local `.env` for development, unless one exists: DEBUG on, fresh secrets.

Standard library only, so it runs before anything is installed.
"""

import re
import secrets
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def local_env(example: str) -> str:
    values = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "true",
        "DJANGO_SUPERUSER_PASSWORD": secrets.token_urlsafe(12),
    }
    for name, value in values.items():
        line = f"{name}={value}"
        example, found = re.subn(rf"^{name}=.*$", line, example, flags=re.MULTILINE)
        if not found:
            example += f"\n{line}\n"
    return example


def main() -> int:
    target = PROJECT / ".env"
    if target.exists():
        print(f"Keeping the existing {target.name}.")
        return 0
    target.write_text(local_env((PROJECT / ".env.example").read_text()))
    target.chmod(0o600)
    print(
        f"Wrote {target.name} for local development (DEBUG on, fresh SECRET_KEY and admin "
        "password)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
