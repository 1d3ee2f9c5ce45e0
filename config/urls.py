from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from apps.emails.forms import QueuedPasswordResetForm

urlpatterns = [
    path("", include("apps.core.urls")),
    path("", include("apps.emails.urls")),
    path("reports/", include("apps.reports.urls")),
    # Before Django's own: the reset email goes through the queue (apps/emails/tasks.py).
    path(
        "accounts/password_reset/",
        auth_views.PasswordResetView.as_view(form_class=QueuedPasswordResetForm),
        name="password_reset",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
