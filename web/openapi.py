"""The OpenAPI 3 document, generated from the same marshmallow schemas the
API validates and serializes with."""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from web.schemas import (
    DocumentResponse,
    ErrorResponse,
    HealthResponse,
    SearchArgs,
    SearchResponse,
    SuggestArgs,
    SuggestResponse,
)


def _json(schema, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {400: "Invalid parameter or query.", 404: "No such document.", 503: "No index yet."}
    return {str(c): _json(ErrorResponse, text[c]) for c in codes}


@lru_cache(maxsize=1)
def build_spec() -> APISpec:
    try:
        release = version("zhsearch")
    except PackageNotFoundError:
        release = "0"
    spec = APISpec(
        title="zhsearch",
        version=release,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Full-text search over Chinese articles."},
    )
    for name, schema in (
        ("SearchResponse", SearchResponse),
        ("DocumentResponse", DocumentResponse),
        ("SuggestResponse", SuggestResponse),
        ("HealthResponse", HealthResponse),
        ("ErrorResponse", ErrorResponse),
    ):
        spec.components.schema(name, schema=schema)
    query = {"in": "query"}
    doc_id = {"in": "path", "name": "id", "required": True, "schema": {"type": "string"}}
    doc_id_arg = {
        "in": "query",
        "name": "id",
        "required": True,
        "schema": {"type": "string"},
        "description": "Any id, including those a path cannot hold (a leading /, .., a line break).",
    }
    for path, summary, params, ok, errors in (
        (
            "/api/search",
            "Ranked search with snippets and facets.",
            [{**query, "schema": SearchArgs}],
            _json("SearchResponse", "One page of results."),
            (400, 503),
        ),
        (
            "/api/doc/{id}",
            "One stored article and related articles.",
            [doc_id],
            _json("DocumentResponse", "The article."),
            (404, 503),
        ),
        (
            "/api/doc",
            "One stored article and related articles, by an id given as a query argument.",
            [doc_id_arg],
            _json("DocumentResponse", "The article."),
            (404, 503),
        ),
        (
            "/api/suggest",
            "Completions for the search box.",
            [{**query, "schema": SuggestArgs}],
            _json("SuggestResponse", "Completions."),
            (400, 503),
        ),
        (
            "/api/health",
            "Index generation and document count.",
            [],
            _json("HealthResponse", "The index is open."),
            (503,),
        ),
        ("/api/openapi.json", "This document.", [], {"description": "OpenAPI 3 document."}, ()),
    ):
        operation = {"summary": summary, "responses": {"200": ok, **_errors(*errors)}}
        if params:
            operation["parameters"] = params
        spec.path(path=path, operations={"get": operation})
    return spec
