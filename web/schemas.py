"""What goes in and out of the JSON API: the single description used to
validate requests, shape responses and generate the OpenAPI document."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, pre_load, validate

from indexer.documents import ArticleSchema
from search.engine import MAX_RESULT_DEPTH, SORTS
from search.query import MAX_QUERY_CHARS

#: The largest page the API serves.
MAX_PAGE_SIZE = 100
#: The longest site value accepted (a host name is at most 253 characters).
MAX_SITE_CHARS = 255


class _Args(Schema):
    """Query-string arguments; repeatable ones arrive as lists."""

    class Meta:
        unknown = EXCLUDE

    LIST_ARGS: tuple[str, ...] = ()

    @pre_load
    def _multidict(self, data: Any, **kwargs) -> Any:
        if hasattr(data, "getlist"):
            return {k: (data.getlist(k) if k in self.LIST_ARGS else data.get(k)) for k in data}
        return data


class SearchArgs(_Args):
    LIST_ARGS = ("tag", "source", "site")

    q = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_QUERY_CHARS, error="the query must be {min} to {max} characters long"),
        metadata={"description": 'The query: words, "phrases", -exclusions, OR, title:, tag:, source:, site:, date:.'},
    )
    page = fields.Integer(load_default=1, validate=validate.Range(min=1), metadata={"description": "1-based page."})
    size = fields.Integer(
        load_default=10,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": "Results per page."},
    )
    sort = fields.String(load_default="relevance", validate=validate.OneOf(SORTS))
    tag = fields.List(
        fields.String(), load_default=list, metadata={"description": "Only articles with this tag; repeatable."}
    )
    source = fields.List(
        fields.String(), load_default=list, metadata={"description": "Only articles from this source; repeatable."}
    )
    site = fields.List(
        fields.String(validate=validate.Length(min=1, max=MAX_SITE_CHARS, error="a site is {min} to {max} characters")),
        load_default=list,
        metadata={"description": "Only articles from this site (a host, or a top folder); repeatable."},
    )
    since = fields.Date(load_default=None, metadata={"description": "Published on or after (YYYY-MM-DD)."})
    until = fields.Date(load_default=None, metadata={"description": "Published on or before (YYYY-MM-DD)."})
    recent = fields.Boolean(
        load_default=False, metadata={"description": "Blend a date decay into relevance (news-like corpora)."}
    )
    facets = fields.Boolean(
        load_default=True,
        metadata={"description": "Count tags, sources, sites and years over every match (false skips that work)."},
    )
    autocorrect = fields.Boolean(
        load_default=True,
        metadata={"description": "Answer a query that finds nothing with its correction (corrected in the answer)."},
    )
    strict = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Refuse a query with broken syntax (400) instead of searching it as plain words"
            " (interpreted_as in the answer)."
        },
    )


class PageArgs(SearchArgs):
    """The search page's arguments: the API's, a year facet, and a query
    that may be empty when a filter says what to show (a tag chip)."""

    q = fields.String(
        load_default="",
        validate=validate.Length(max=MAX_QUERY_CHARS, error="the query is longer than {max} characters"),
    )
    year = fields.Integer(
        load_default=None,
        strict=False,
        validate=validate.Range(min=1, max=9999, error="年份应为四位数字"),
        error_messages={"invalid": "年份应为四位数字"},
    )

    #: What the page's own links may carry over; nothing else reaches them.
    LINK_ARGS = (
        "q",
        "tag",
        "source",
        "site",
        "since",
        "until",
        "year",
        "sort",
        "size",
        "recent",
        "page",
        "autocorrect",
    )


class DocArgs(_Args):
    related = fields.Boolean(load_default=True, metadata={"description": "Include related articles (more-like-this)."})


class SuggestArgs(_Args):
    q = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_QUERY_CHARS, error="the text must be {min} to {max} characters long"),
    )


class HitSchema(Schema):
    id = fields.String(required=True)
    url = fields.String(allow_none=True)
    title_html = fields.String(metadata={"description": "Escaped title with <mark> around matched words."})
    snippet_html = fields.String(metadata={"description": "Escaped passage with <mark> around matched words."})
    tags = fields.List(fields.String())
    source = fields.String(allow_none=True)
    author = fields.String(allow_none=True)
    published = fields.String(allow_none=True, metadata={"description": "ISO date or datetime, as crawled."})
    score = fields.Float()
    site = fields.String(allow_none=True, metadata={"description": "The host, or the top folder of a local page."})
    display_url = fields.String(
        allow_none=True, metadata={"description": "A readable trail to the page: host › folder › page."}
    )


class FacetValueSchema(Schema):
    value = fields.Raw(required=True, metadata={"description": "Tag, source or site (string) or year (integer)."})
    count = fields.Integer(required=True)


class FacetsSchema(Schema):
    tags = fields.List(fields.Nested(FacetValueSchema))
    sources = fields.List(fields.Nested(FacetValueSchema))
    sites = fields.List(fields.Nested(FacetValueSchema))
    years = fields.List(fields.Nested(FacetValueSchema))


class SearchResponse(Schema):
    query = fields.String()
    total = fields.Integer(metadata={"description": "Every matching article."})
    took_ms = fields.Float()
    page = fields.Integer()
    size = fields.Integer()
    sort = fields.String()
    fallback = fields.Boolean(
        metadata={"description": "True when no article had every word and any-word matches are shown."}
    )
    results = fields.List(fields.Nested(HitSchema))
    facets = fields.Nested(FacetsSchema)
    suggestion = fields.String(
        allow_none=True, metadata={"description": "A corrected query (pinyin, typos) when this one found little."}
    )
    corrected = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        allow_none=True,
        metadata={
            "description": 'The typed query and its correction ({"from", "to"}) when these are the correction\'s results.'
        },
    )
    interpreted_as = fields.String(
        allow_none=True,
        metadata={"description": "The plain words searched when the query's syntax was broken (not strict)."},
    )
    all_words = fields.Integer(
        allow_none=True,
        metadata={
            "description": "For a question or a fallback (ranked by any word): how many of total hold every"
            " word; the rest hold some. Null otherwise."
        },
    )
    partial = fields.Boolean(
        metadata={
            "description": "True when the search's time budget ran out: the results are the best of the"
            " matches found by then, and total counts those."
        }
    )


class RelatedSchema(Schema):
    id = fields.String()
    url = fields.String(allow_none=True)
    title = fields.String(allow_none=True)


class DocumentResponse(Schema):
    document = fields.Nested(ArticleSchema)
    related = fields.List(fields.Nested(RelatedSchema))


class SuggestResponse(Schema):
    q = fields.String()
    suggestions = fields.List(fields.String())


class HealthResponse(Schema):
    status = fields.String()
    generation = fields.String(allow_none=True, metadata={"description": "Live index generation and commit."})
    documents = fields.Integer()


class ErrorDetail(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    field = fields.String(allow_none=True)


class ErrorResponse(Schema):
    error = fields.Nested(ErrorDetail, required=True)


__all__ = [
    "MAX_PAGE_SIZE",
    "MAX_RESULT_DEPTH",
    "DocArgs",
    "DocumentResponse",
    "ErrorResponse",
    "HealthResponse",
    "SearchArgs",
    "SearchResponse",
    "SuggestArgs",
    "SuggestResponse",
]
