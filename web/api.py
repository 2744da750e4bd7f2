"""The JSON API under /api/: search, documents, suggestions, health and the
OpenAPI document. Requests and responses go through ``web.schemas``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request

from search.engine import SearchRequest
from web import engine
from web.schemas import (
    DocArgs,
    DocumentResponse,
    HealthResponse,
    SearchArgs,
    SearchResponse,
    SuggestArgs,
    SuggestResponse,
)

bp = Blueprint("api", __name__, url_prefix="/api")

# One instance of each schema for every request: building a marshmallow
# schema binds and copies all its fields, and doing that twice per search
# was 6-7 % of a serving worker's CPU. Loading and dumping keep no state
# on the instance.
_search_args, _search_response = SearchArgs(), SearchResponse()
_doc_args, _document_response = DocArgs(), DocumentResponse()
_suggest_args, _suggest_response = SuggestArgs(), SuggestResponse()
_health_response = HealthResponse()


def search_request(args: dict[str, Any], facets: bool = True) -> SearchRequest:
    """Validated arguments (SearchArgs) as an engine request."""
    return SearchRequest(
        q=args["q"],
        page=args["page"],
        size=args["size"],
        sort=args["sort"],
        tags=args["tag"],
        sources=args["source"],
        sites=args["site"],
        since=args["since"],
        until=args["until"],
        recent=args["recent"],
        facets=facets,
        strict=args["strict"],
        autocorrect=args["autocorrect"],
    )


@bp.get("/search")
def search():
    args = _search_args.load(request.args)
    result = engine().search(search_request(args, facets=args["facets"]))
    return jsonify(_search_response.dump(result.to_dict()))


@bp.get("/doc")
def document_by_id():
    """Any id, as a query argument (``/api/doc?id=...``)."""
    doc_id = request.args.get("id")
    if not doc_id:
        abort(404, description="no document id given (id=...)")
    return document(doc_id)


@bp.get("/doc/<path:doc_id>", merge_slashes=False)
def document(doc_id: str):
    args = _doc_args.load(request.args)
    doc = engine().document(doc_id)
    if doc is None:
        abort(404, description=f"no document with id {doc_id!r}")
    related = engine().related(doc_id) if args["related"] else []
    return jsonify(_document_response.dump({"document": doc, "related": related}))


@bp.get("/suggest")
def suggestions():
    args = _suggest_args.load(request.args)
    words = engine().suggest(args["q"])
    return jsonify(_suggest_response.dump({"q": args["q"], "suggestions": words}))


@bp.get("/health")
def health():
    eng = engine()
    documents = eng.doc_count()
    return jsonify(_health_response.dump({"status": "ok", "generation": eng.version, "documents": documents}))


@bp.get("/openapi.json")
def openapi():
    from web.openapi import build_spec

    return jsonify(build_spec().to_dict())
