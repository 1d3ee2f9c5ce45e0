"""The emails the site sends in the background, through two of taskqueue's front doors."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from apps.emails.delivery import TransientEmailError, send_templated_email
from apps.emails.models import ContactMessage
from taskqueue import BaseQueue, TaskInfo
from taskqueue.celery import shared_task


@dataclass
class WelcomeEmail:
    user_id: int


class WelcomeEmailQueue(BaseQueue[WelcomeEmail]):
    """A queue class: the welcome email of a new account, retried while the mail server is
    unreachable."""

    queue_name = "email"
    max_attempts = 5
    retry_on = (TransientEmailError,)
    retry_backoff = 2.0  # seconds before the second attempt, doubling: 2, 4, 8, 16

    @classmethod
    def process(cls, task_info: TaskInfo[WelcomeEmail]) -> None:
        user = get_user_model().objects.filter(pk=task_info.get_arg().user_id).first()
        if user is None:
            return  # the account was deleted before its welcome went out: nothing to say
        context = {"user": user, "site_url": settings.SITE_URL}
        send_templated_email("welcome", context, to=[user.email])


@dataclass
class PasswordResetEmail:
    """Who asked, and the site as their request named it: never the reset link itself, which would
    let anyone who can read the queue's arguments (staff in the admin) reset the password."""

    user_id: int
    domain: str
    protocol: str


class PasswordResetEmailQueue(BaseQueue[PasswordResetEmail]):
    """The password-reset link, made by the worker when it sends the email."""

    queue_name = "email"
    max_attempts = 5
    retry_on = (TransientEmailError,)
    retry_backoff = 2.0

    @classmethod
    def process(cls, task_info: TaskInfo[PasswordResetEmail]) -> None:
        request = task_info.get_arg()
        user = get_user_model()._default_manager.filter(pk=request.user_id, is_active=True).first()
        if user is None or not user.has_usable_password():
            return  # deactivated, or its password made unusable, since it asked: no link to send
        context = {
            "user": user,
            "domain": request.domain,
            "protocol": request.protocol,
            "uid": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        }
        send_templated_email(
            "password_reset", context, to=[getattr(user, user.get_email_field_name())]
        )


@shared_task(queue="email", autoretry_for=(TransientEmailError,), retry_backoff=2, max_retries=4)
def notify_team_of_contact(message_id: int) -> None:
    """A Celery-style task: tell the team about a contact message; replying answers the sender."""
    message = ContactMessage.objects.get(pk=message_id)
    context = {"contact": message, "site_url": settings.SITE_URL}
    send_templated_email("contact", context, to=[settings.CONTACT_EMAIL], reply_to=[message.email])
