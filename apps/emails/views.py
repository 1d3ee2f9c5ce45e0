from django.contrib import messages
from django.contrib.auth import login
from django.db import transaction
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.views.generic import CreateView

from apps.core.ratelimit import rate_limited
from apps.emails.forms import ContactForm, SignUpForm
from apps.emails.tasks import WelcomeEmail, WelcomeEmailQueue, notify_team_of_contact


@method_decorator(rate_limited("signup"), name="dispatch")
class SignUpView(CreateView):
    """Create an account and queue its welcome email: the page answers without waiting for the mail
    server."""

    form_class = SignUpForm
    template_name = "emails/signup.html"
    success_url = reverse_lazy("core:home")

    def form_valid(self, form: SignUpForm) -> HttpResponse:
        # One transaction: the account and its welcome email exist together or not at all.
        with transaction.atomic():
            user = self.object = form.save()
            WelcomeEmailQueue.add_task(
                WelcomeEmail(user.pk), note=user.email, dupe_key=f"welcome-{user.pk}"
            )
        login(self.request, user)
        messages.success(
            self.request,
            f"Welcome, {user.username}! A welcome email is on its way to {user.email}.",
        )
        return HttpResponseRedirect(self.get_success_url())


@method_decorator(rate_limited("contact"), name="dispatch")
class ContactView(CreateView):
    """Keep the message, then let a worker tell the team by email."""

    form_class = ContactForm
    template_name = "emails/contact.html"
    success_url = reverse_lazy("emails:contact")

    def form_valid(self, form: ContactForm) -> HttpResponse:
        with transaction.atomic():
            response = super().form_valid(form)
            notify_team_of_contact.delay(self.object.pk)
        messages.success(
            self.request, "Thank you: your message reached us, and the team is being told."
        )
        return response
