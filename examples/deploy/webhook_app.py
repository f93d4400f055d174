"""A Telegram bot behind a webhook, served by several gunicorn workers (aiohttp), with rolectl.

    ROLECTL_DB=/var/lib/modbot/bot.db gunicorn -c examples/deploy/gunicorn.conf.py

Telegram POSTs each update to ``/webhook``; the answer goes back in the HTTP response (a
``sendMessage`` call, as the Bot API allows), so this file needs no bot framework and no
token: ``/whoami`` answers the sender's role, ``/ban`` is for admins. ``GET /healthz``
answers 200 while the cache follows the log and 503 while it cannot vouch for it.

**Connect after fork.** gunicorn with ``--preload`` imports this module once, in the master,
and forks the workers from it. A rolectl handle opened in the master would belong to the
master (its connections, its follower thread): a worker using it raises
:class:`rolectl.ForkedError`. So nothing here connects at import: each worker connects in its
own aiohttp start-up (:func:`rolectl_context`), registers under its own pid (``rolectl
stats`` lists one row per worker), and closes on shutdown.

Every response says which worker answered in ``X-Rolectl-Instance`` (its name and pid, as
``rolectl stats`` shows them).
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any, AsyncIterator

from aiohttp import web

import rolectl.aio
from rolectl.aio import AsyncRoles
from rolectl.health import CHECKS, health_response
from rolectl.integrations import failure_log, lookup
from rolectl.integrations.failurelog import FailureLog

__all__ = ["app", "create_app"]

ROLES = web.AppKey("roles", AsyncRoles)
FAILURES = web.AppKey("failures", FailureLog)
NAME = os.environ.get("ROLECTL_NAME", "webhook")


async def rolectl_context(app: web.Application) -> AsyncIterator[None]:
    """Runs in each worker, after the fork: connect, serve, close. ``strict=False``: a worker
    that starts before its database answers everyone as ``user`` until it is there."""
    roles = await rolectl.aio.connect(os.environ.get("ROLECTL_DB"), name=NAME, strict=False)
    app[ROLES] = roles
    app[FAILURES] = failure_log(roles)
    try:
        yield
    finally:
        await roles.aclose()


def served_by(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["X-Rolectl-Instance"] = f"{NAME} pid {os.getpid()}"
    return response


def reply_text(text: str, role: str) -> str:
    command = text.split(maxsplit=1)[0].split("@", 1)[0] if text.strip() else ""
    if command == "/whoami":
        return f"You are {role}."
    if command == "/ban":
        return "Banned." if role == "admin" else "Admins only."
    return ""


async def webhook(request: web.Request) -> web.StreamResponse:
    secret = os.environ.get("WEBHOOK_SECRET")  # the secret_token given to setWebhook
    if secret and not hmac.compare_digest(request.headers.get("X-Telegram-Bot-Api-Secret-Token", ""), secret):
        return served_by(web.Response(status=401))
    try:
        update: Any = await request.json()
    except ValueError:
        return served_by(web.Response(status=400))
    message = update.get("message") if isinstance(update, dict) else None
    if not isinstance(message, dict):
        return served_by(web.json_response({}))  # not a message: nothing to answer
    sender = (message.get("from") or {}).get("id")
    chat = (message.get("chat") or {}).get("id")
    # Fails closed: a database that cannot be read means "user", logged once per outage.
    role = await lookup(request.app[ROLES], sender if isinstance(sender, int) else None, request.app[FAILURES])
    text = reply_text(str(message.get("text") or ""), role)
    if not text or not isinstance(chat, int):
        return served_by(web.json_response({}))
    return served_by(web.json_response({"method": "sendMessage", "chat_id": chat, "text": text}))


async def healthz(request: web.Request) -> web.StreamResponse:
    """``roles.health()`` of this worker: 200 while its cache can vouch for roles (readiness;
    ``?check=live`` for liveness), 503 otherwise. Never touches the database."""
    check = request.query.get("check", "ready")
    if check not in CHECKS:
        return served_by(web.Response(status=400))
    status, headers, body = health_response(request.app[ROLES], check)
    return served_by(web.Response(status=status, headers=headers, body=body))


def create_app() -> web.Application:
    """The application; importing this module builds it but opens nothing (see above)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    app = web.Application()
    app.cleanup_ctx.append(rolectl_context)
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/healthz", healthz)
    return app


app = create_app()

if __name__ == "__main__":  # one process, no gunicorn: python examples/deploy/webhook_app.py
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
