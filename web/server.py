"""Serving the app: gunicorn with sync workers in production, Flask's
reloader for development (never the interactive debugger)."""

from __future__ import annotations

import os
from typing import Any

from indexer.config import Settings


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
        "worker_class": "sync",
        "timeout": timeout,
        "graceful_timeout": 10,
        "limit_request_line": 8190,
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


def serve_dev(settings: Settings, host: str, port: int) -> None:
    """Flask's development server with the reloader, without the debugger."""
    from web import create_app

    create_app(settings).run(host=host, port=port, debug=False, use_reloader=True)
