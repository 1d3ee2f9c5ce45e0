from django.urls import path

from apps.emails import views

app_name = "emails"

urlpatterns = [
    path("signup/", views.SignUpView.as_view(), name="signup"),
    path("contact/", views.ContactView.as_view(), name="contact"),
]
