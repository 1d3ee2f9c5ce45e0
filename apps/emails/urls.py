from django.urls import path
from django.views.generic import TemplateView

app_name = "emails"

# Placeholder until the emails demo lands.
urlpatterns = [
    path("signup/", TemplateView.as_view(template_name="core/home.html"), name="signup"),
    path("contact/", TemplateView.as_view(template_name="core/home.html"), name="contact"),
]
