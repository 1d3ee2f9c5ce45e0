"""A real SMTP server on loopback (aiosmtpd) that tests can stop, start again, and make refuse
mail."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from config.env import mailer_config
from scripts.pgcluster import free_port


class Mailbox:
    """aiosmtpd's handler: keeps what it accepts; refuses recipients the test names, permanently or
    for now."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refused: dict[str, str] = {}

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options
    ) -> str:
        if address in self.refused:
            return self.refused[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?timeout=5"

    @property
    def mailer(self) -> dict[str, object]:
        """The MAILERS entry for this server, built from `url` as the site's settings build it."""
        return mailer_config("EMAIL_URL", self.url)

    @property
    def messages(self) -> list[EmailMessage]:
        return self.mailbox.messages

    def start(self) -> None:
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse(self, address: str, reply: str) -> None:
        self.mailbox.refused[address] = reply

    def wait_for_message(self, timeout: float) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.messages:
                return self.messages[-1]
            time.sleep(0.05)
        raise AssertionError(f"No email reached the SMTP server within {timeout}s")


@pytest.fixture
def smtp_server(settings) -> Iterator[SmtpServer]:
    """A running SMTP server on 127.0.0.1, and this process's mail settings pointing at it."""
    server = SmtpServer()
    server.start()
    settings.MAILERS = {"default": server.mailer}
    yield server
    server.stop()
