from django.urls import path
from django.views.generic import TemplateView

app_name = "reports"

# Placeholder until the reports demo lands.
urlpatterns = [path("", TemplateView.as_view(template_name="core/home.html"), name="list")]
