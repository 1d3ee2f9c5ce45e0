import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Create the local admin login from DJANGO_SUPERUSER_* (as written to .env by `make run`) "
        "and print it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000/admin/", help="Where the admin is served."
        )

    def handle(self, *args, url: str, **options) -> None:
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        if not username or not password:
            raise CommandError(
                "Set DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD (see .env.example)."
            )
        User = get_user_model()
        user = User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            User._default_manager.create_superuser(username, email, password)
            note = "created"
        elif user.check_password(password):
            note = "exists"
        else:
            note = "exists, with a password changed since; the one above is stale"
        self.stdout.write(f"Admin login ({note}): {url}  user {username}  password {password}")
