"""Gunicorn settings, driven by the environment as platforms set it (PORT, WEB_CONCURRENCY)."""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Requests get this long to finish after SIGTERM; supervisord's stopwaitsecs must exceed it.
graceful_timeout = 20
timeout = 30
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Gunicorn 27's control socket sits at one path per user, so two sites (or test runs) on a host would
# fight over it; nothing here uses it.
control_socket_disable = True
