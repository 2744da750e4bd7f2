"""Web layer of zhsearch: the search page and the JSON API, a thin shell
over ``search``.

``create_app(config)`` builds the Flask application (Flask's application
factory pattern); each process opens the index once, and the engine reopens
it when a reindex commits something new.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app

from indexer.config import Settings
from search.engine import SearchEngine
from search.shards import open_engine

#: Largest request body accepted (the API takes no uploads).
MAX_REQUEST_BYTES = 64 * 1024


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """The application. ``config`` is a Settings object, or overrides of
    the settings (``{"index": "..."}``), or None for environment and defaults."""
    settings = config if isinstance(config, Settings) else Settings.load(dict(config or {}))
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, JSON_SORT_KEYS=False)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    search_engine = open_engine(settings)
    search_engine.warm_up()
    app.extensions["zhsearch"] = search_engine

    from web import api, errors, views

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    errors.register(app)
    return app


def engine() -> SearchEngine:
    """The current application's search engine."""
    return current_app.extensions["zhsearch"]
