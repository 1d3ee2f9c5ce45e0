"""Gunicorn settings, read from the same environment (and .env file) as the Django settings.

- Bound to 127.0.0.1 unless HOST says otherwise: the site is meant to sit behind a proxy (nginx,
  Caddy, a platform's router) that buffers slow clients; see docs/deploying.md.
- Threaded workers (`gthread`): a client that sends its request slowly holds one thread, not the
  whole worker, so a handful of half-sent connections cannot stop the site.
- The scheme headers (X-Forwarded-Proto and the like) are trusted only with TRUST_X_FORWARDED_PROTO,
  and then only from FORWARDED_ALLOW_IPS: gunicorn would otherwise mark a request from 127.0.0.1 as
  HTTPS on the client's say-so, whatever Django's setting.
"""

from pathlib import Path

from config.env import site_environment

env = site_environment(Path(__file__).resolve().parent)

bind = f"{env.raw('HOST', '127.0.0.1')}:{env.int('PORT', default=8000, minimum=1)}"
workers = env.int("WEB_CONCURRENCY", default=2, minimum=1)
worker_class = "gthread"
threads = env.int("WEB_THREADS", default=8, minimum=1)
# A keep-alive connection that sends nothing is closed after this many seconds.
keepalive = 5
# Requests get this long to finish after SIGTERM; supervisord's stopwaitsecs must exceed it.
graceful_timeout = 20
timeout = 30
accesslog = "-"
errorlog = "-"
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    forwarded_allow_ips = env.raw("FORWARDED_ALLOW_IPS", "127.0.0.1")
else:
    forwarded_allow_ips = ""
    secure_scheme_headers: dict[str, str] = {}
# Gunicorn 27's control socket sits at one path per user, so two sites (or test runs) on a host
# would fight over it; nothing here uses it.
control_socket_disable = True
