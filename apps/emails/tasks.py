"""The emails the site sends in the background, through two of taskqueue's front doors."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model

from apps.emails.delivery import TransientEmailError, send_templated_email
from apps.emails.models import ContactMessage
from taskqueue import BaseQueue, TaskInfo
from taskqueue.celery import shared_task


@dataclass
class WelcomeEmail:
    user_id: int


class WelcomeEmailQueue(BaseQueue[WelcomeEmail]):
    """A queue class: the welcome email of a new account, retried while the mail server is unreachable."""

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


@shared_task(queue="email", autoretry_for=(TransientEmailError,), retry_backoff=2, max_retries=4)
def notify_team_of_contact(message_id: int) -> None:
    """A Celery-style task: tell the team about a contact message; replying answers the sender."""
    message = ContactMessage.objects.get(pk=message_id)
    context = {"contact": message, "site_url": settings.SITE_URL}
    send_templated_email("contact", context, to=[settings.CONTACT_EMAIL], reply_to=[message.email])
