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
from web.errors import SECURITY_HEADERS, RequestTimedOut


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
        "worker_exit": _worker_exit,
    }

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            app = create_app(settings)
            # Commits are noticed and opened off the request path.
            app.extensions["zhsearch"].start_refresher()
            return app

    Application().run()


def _worker_exit(_server: Any, worker: Any) -> None:
    """Stop the worker's refresher threads and close its index before the
    interpreter shuts down: with the threads still running and the
    refresher's objects still frozen (``search.background``), finalizing
    printed errors from logging and gevent on every stop."""
    app = getattr(worker, "wsgi", None)
    engine = app.extensions.get("zhsearch") if app is not None else None
    if engine is not None:
        engine.close()


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

    def load_wsgi(self) -> None:
        """Build the app (which opens the index and warms it up) while an OS
        thread tells the master this worker is alive: warming up a large
        index takes longer than a short ``--timeout``, and the master took
        a worker still booting for a stuck one and killed it, again and
        again. (gevent has replaced ``threading``; the thread and its sleep
        are the unpatched ones.)"""
        from gevent import monkey

        start_thread = monkey.get_original("_thread", "start_new_thread")
        sleep = monkey.get_original("time", "sleep")
        booting = [True]

        def heartbeat() -> None:
            while booting[0]:
                self.notify()
                sleep(0.5)

        start_thread(heartbeat, ())
        try:
            super().load_wsgi()
        finally:
            booting[0] = False

    def handle_abort(self, sig, frame) -> None:
        """The master found this worker silent for ``timeout`` seconds (one
        request has held it) and asks it to stop. gunicorn exits at once,
        and the client got an HTML 500 from gevent; here the request that
        held the worker is stopped with ``RequestTimedOut``, which the app
        answers as any error (JSON under /api/), and the worker then exits
        for the master to replace."""
        import gevent

        self.alive = False
        if gevent.getcurrent() is gevent.get_hub():
            super().handle_abort(sig, frame)  # no request is running
        raise RequestTimedOut()


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
