"""gunicorn settings for ``webhook_app.py``: ``gunicorn -c examples/deploy/gunicorn.conf.py``.

Each setting can be overridden on the command line (``--bind``, ``--workers``) or by the
environment variables read below. rolectl's rule for forking servers: **connect in the
worker, after the fork** -- here the aiohttp app connects in its start-up, which runs in each
worker; a WSGI app (sync workers) would connect in :func:`post_fork` instead.
"""

from __future__ import annotations

import os
from typing import Any

chdir = os.path.dirname(os.path.abspath(__file__))  # webhook_app.py is importable from here
wsgi_app = "webhook_app:app"
worker_class = "aiohttp.GunicornWebWorker"
bind = os.environ.get("BIND", "127.0.0.1:8080")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Import the app once in the master (faster restarts of workers, errors found at start).
# Safe with rolectl because nothing connects at import time.
preload_app = True
graceful_timeout = 10  # a worker closes its rolectl handle (unregisters) within this
timeout = 30


def post_fork(server: Any, worker: Any) -> None:
    """Runs in each new worker. Nothing to do for the aiohttp app (it connects on start-up).
    A WSGI app keeps one handle per worker and opens it here::

        import rolectl, myapp
        myapp.roles = rolectl.connect(os.environ["ROLECTL_DB"], name="web", strict=False)
    """
    server.log.info("worker %s forked; it connects to rolectl itself", worker.pid)
