"""Serve ``roles.health()`` over HTTP in one line.

* aiohttp (aiogram's webhook server, or any aiohttp app)::

      from rolectl.integrations.health import aiohttp_route
      aiohttp_route(app, roles)                             # GET /healthz: 200 if ready, else 503
      aiohttp_route(app, roles, path="/livez", check="live")

  ``GET /healthz?check=live`` asks for another check on the same route.
* anything else: :func:`health_response` gives ``(status, headers, body)``; e.g. in Flask
  ``status, headers, body = health_response(roles); return body, status, headers``.

The checks (``ready`` for a readiness probe, ``live`` for a liveness probe, ``ok`` for
alerts) are described in :mod:`rolectl.health`. Nothing here touches the database, so a probe
answers in microseconds even while the database hangs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..errors import InvalidInputError
from ..health import CHECKS, health_response

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

__all__ = ["aiohttp_handler", "aiohttp_route", "health_response"]


def aiohttp_handler(roles: Any, check: str = "ready") -> Callable[["web.Request"], Awaitable["web.Response"]]:
    """An aiohttp request handler answering with :func:`health_response` (``?check=`` overrides
    ``check``)."""
    from aiohttp import web

    if check not in CHECKS:
        raise InvalidInputError(f"unknown health check {check!r}", hint=f"one of {', '.join(CHECKS)}")

    async def handle(request: web.Request) -> web.Response:
        wanted = request.query.get("check", check)
        if wanted not in CHECKS:
            return web.Response(status=400, text=f"unknown check {wanted!r}: one of {', '.join(CHECKS)}\n")
        status, headers, body = health_response(roles, wanted)
        return web.Response(status=status, body=body, headers=headers)

    return handle


def aiohttp_route(app: "web.Application", roles: Any, *, path: str = "/healthz", check: str = "ready") -> None:
    """Add ``GET path`` (and ``HEAD``) to ``app``, answering ``roles``' health."""
    app.router.add_get(path, aiohttp_handler(roles, check))
