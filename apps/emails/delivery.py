"""Sending the site's emails: rendered from templates, with SMTP errors sorted into retry or give
up."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string


class TransientEmailError(Exception):
    """The mail server could not take the message now (down, busy, 4xx): sending again later may
    work."""


def send_templated_email(
    template: str, context: dict[str, Any], to: Sequence[str], reply_to: Sequence[str] = ()
) -> None:
    """Send `emails/mail/<template>` as a text and an HTML part, with the subject from
    `<template>_subject.txt`.

    Raises TransientEmailError for failures worth retrying; permanent ones (5xx, bad configuration)
    propagate as they are, so the task fails at once with the server's own words.
    """
    # One line, whatever the context holds: a header cannot take a line break.
    subject = " ".join(render_to_string(f"emails/mail/{template}_subject.txt", context).split())
    message = EmailMultiAlternatives(
        subject,
        render_to_string(f"emails/mail/{template}.txt", context),
        to=list(to),
        reply_to=list(reply_to),
    )
    message.attach_alternative(
        render_to_string(f"emails/mail/{template}.html", context), "text/html"
    )
    try:
        message.send()
    except (
        OSError
    ) as error:  # smtplib's exceptions are OSErrors, as are refused and reset connections
        if is_transient(error):
            raise TransientEmailError(f"{type(error).__name__}: {error}") from error
        raise


def is_transient(error: OSError) -> bool:
    """SMTP's own rule: 4xx replies are temporary, 5xx permanent; a lost or refused connection is
    temporary."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    # A TLS failure (a bad certificate, a wrong port for TLS) is configuration: trying again will
    # not help.
    return not isinstance(error, smtplib.SMTPException | ssl.SSLError)
