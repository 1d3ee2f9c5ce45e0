import contextlib

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordResetForm, UserCreationForm

from apps.emails.models import ContactMessage
from apps.emails.tasks import PasswordResetEmail, PasswordResetEmailQueue
from taskqueue import DupeKeyExc


class SignUpForm(UserCreationForm):
    """A new account: a username, an email address for the welcome, and a password."""

    email = forms.EmailField(help_text="We send a welcome email here.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self) -> str:
        email = self.cleaned_data["email"]
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email address already exists.")
        return email


class ContactForm(forms.ModelForm):
    class Meta:
        model = ContactMessage
        fields = ("name", "email", "message")
        widgets = {"message": forms.Textarea(attrs={"rows": 6})}


class QueuedPasswordResetForm(PasswordResetForm):
    """Django's password-reset form, whose email a worker sends: the page answers at once, and the
    same for an address with no account, so timing tells nothing either."""

    def send_mail(
        self, subject_template_name: str, email_template_name: str, context: dict, *args, **kwargs
    ) -> None:
        user = context["user"]
        # One waiting email per account, however often the form is sent: the link it gets is fresh.
        with contextlib.suppress(DupeKeyExc):
            PasswordResetEmailQueue.add_task(
                PasswordResetEmail(user.pk, context["domain"], context["protocol"]),
                dupe_key=f"password-reset-{user.pk}",
            )
