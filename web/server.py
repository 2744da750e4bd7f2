"""Serving the app: gunicorn with gevent workers in production, Flask's
reloader for development (never the interactive debugger).

gevent workers, because a sync worker is held by any client that opens a
connection and sends its request slowly or never: as many idle sockets as
workers stopped the site. A gevent worker waits for every connection at
once and runs a request only when it has arrived whole; searching itself is
CPU work and runs one request at a time per worker, as before.
"""

from __future__ import annotations

import json
import os
from typing import Any

from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

from indexer.config import Settings
from web.errors import SECURITY_HEADERS


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def serve(settings: Settings, host: str, port: int, workers: int | None = None, timeout: int = 30) -> None:
    """Run gunicorn in this process until it is stopped.

    Each worker builds the app itself (no preloading), so each opens the
    index once, after the fork, and reopens it when a reindex commits.
    """
    from gunicorn.app.base import BaseApplication

    from web import create_app

    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers or default_workers(),
        "worker_class": "web.server.Worker",
        "worker_connections": 1000,
        "timeout": timeout,
        "graceful_timeout": 10,
        # gunicorn allows at most 8,190 bytes or "no limit" (then 1 MB);
        # the app answers 414 past its own 16 KB (web.errors).
        "limit_request_line": 0,
        "limit_request_fields": 50,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "zhsearch",
    }

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(settings)

    Application().run()


class Worker(GeventWorker):
    """gunicorn's gevent worker whose own error answers (a malformed
    request, a request line or headers too large) are JSON with the
    security headers every answer of the app carries, not bare HTML.

    gunicorn writes them with ``gunicorn.util.write_error`` and offers no
    other hook; the worker process replaces that function with ours.
    """

    def init_process(self) -> None:
        util.write_error = write_error
        super().init_process()


def write_error(sock, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps(
        {"error": {"code": reason.lower().replace(" ", "_"), "message": mesg or reason, "field": None}},
        ensure_ascii=False,
    ).encode("utf-8")
    head = [
        f"HTTP/1.1 {status_int} {reason}",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
    ]
    util.write_nonblock(sock, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def serve_dev(settings: Settings, host: str, port: int) -> None:
    """Flask's development server with the reloader, without the debugger."""
    from web import create_app

    create_app(settings).run(host=host, port=port, debug=False, use_reloader=True)
