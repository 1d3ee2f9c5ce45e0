from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from apps.core.ratelimit import rate_limited
from apps.emails.forms import QueuedPasswordResetForm

urlpatterns = [
    path("", include("apps.core.urls")),
    path("", include("apps.emails.urls")),
    path("reports/", include("apps.reports.urls")),
    # Before Django's own: the reset email goes through the queue (apps/emails/tasks.py); both are
    # rate-limited.
    path(
        "accounts/password_reset/",
        rate_limited("password_reset", field="email")(
            auth_views.PasswordResetView.as_view(form_class=QueuedPasswordResetForm)
        ),
        name="password_reset",
    ),
    path(
        "accounts/login/",
        rate_limited("login", field="username")(auth_views.LoginView.as_view()),
        name="login",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/login/", rate_limited("login", field="username")(admin.site.login)),
    path("admin/", admin.site.urls),
]
