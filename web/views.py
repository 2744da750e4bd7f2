"""The HTML pages: the search page and the article page. Rendered on the
server so they work without JavaScript; the script adds suggestions, results
while typing (it fetches these same pages) and keyboard shortcuts."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, abort, render_template, request, url_for
from markupsafe import Markup, escape
from marshmallow import ValidationError

from search.engine import MAX_RESULT_DEPTH, SearchEngine
from search.frequent import cached_frequent_title_words
from search.highlight import highlight_all
from search.query import QueryError, parse_query
from web import engine
from web.api import search_request
from web.errors import validation_to_api_error
from web.schemas import PageArgs

bp = Blueprint("views", __name__)
_page_schema = PageArgs()  # one for every request (see web.api)

SORT_LABELS = {"relevance": "相关度", "date": "最新"}
#: The box's example when the index has no titles to take words from.
DEFAULT_PLACEHOLDER = "输入关键词"
#: Ids that read the same as a path segment (``/doc/sample-001``); any
#: other id goes in the query string, which nothing normalises.
_PATH_SAFE_ID = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9_.~-]*")
#: The anchor of the article page's first marked word.
FIRST_MATCH_ID = "first-match"


def safe_url(url: str | None) -> str | None:
    """Only http(s) links are followed; anything else is shown as text."""
    if not url:
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


def link(**changes: Any) -> str:
    """This page's URL with some arguments changed; filters reset paging.

    ``add_tag=x`` / ``remove_tag=x`` (and ``_source``, ``_site``) add or drop one value;
    ``year=2024`` or ``year=None``, ``sort=...``, ``page=n`` set or clear one.
    Only the page's own arguments are carried over, as a query string on a
    relative path: nothing from the request reaches ``url_for`` (whose
    ``_external``, ``_scheme`` and ``_anchor`` would obey it).
    """
    args = {name: request.args.getlist(name) for name in PageArgs.LINK_ARGS if name in request.args}
    page = changes.pop("page", None)
    args.pop("page", None)
    for key, value in changes.items():
        if key.startswith(("add_", "remove_")):
            action, name = key.split("_", 1)
            values = [v for v in args.get(name, []) if v != value]
            if action == "add":
                values.append(value)
            args[name] = values
        elif value is None:
            args.pop(key, None)
        else:
            args[key] = [str(value)]
    if page and page > 1:
        args["page"] = [str(page)]
    return url_for("views.index") + "?" + urlencode(args, doseq=True)


def _page_args() -> tuple[dict[str, Any], int | None]:
    """The page's arguments, validated as the API's are; a year becomes a
    date range."""
    args = _page_schema.load(request.args)
    year = args.pop("year")
    if year is not None:
        args["since"] = dt.date(year, 1, 1)
        args["until"] = dt.date(year, 12, 31)
    return args, year


def _filtered() -> bool:
    return any(request.args.get(name) for name in ("tag", "source", "site", "since", "until", "year"))


@bp.app_template_global()
def doc_link(doc_id: str, from_search: bool = False) -> str:
    """The article page of an id. A plain id goes in the path
    (``/doc/sample-001``); any other as a query argument, since an id in the
    path (``..``, ``a/../b``, a leading ``/``, a line break) can be resolved
    by the browser to another page, or not routed at all.

    ``from_search`` carries this page's search along (``q``, filters, sort,
    page): the article page marks the query's words, and links back to
    exactly these results; the link can be shared with its marks.
    """
    search = [(name, v) for name in PageArgs.LINK_ARGS for v in request.args.getlist(name)] if from_search else []
    if _PATH_SAFE_ID.fullmatch(doc_id):
        base, args = url_for("views.document", doc_id=doc_id), search
    else:
        base, args = url_for("views.document_by_id"), [("id", doc_id), *search]
    return base + ("?" + urlencode(args) if args else "")


@bp.app_template_global()
def tag_link(tag: str) -> str:
    """Articles with this tag, through the tag filter (a ``tag:`` query
    cannot hold every tag: quotes, brackets)."""
    return url_for("views.index") + "?" + urlencode({"tag": tag})


@bp.app_template_filter()
def day(value: str | None) -> str:
    return (value or "")[:10]


#: The parser's refusals, in the page's language (its messages are the
#: API's, in English).
_CHINESE_MESSAGES = [
    (
        "more work than one search may take",
        "这个查询需要的计算量超出了单次搜索的上限（单字或排除词太多）；请换用更长的词语，或给短语加上引号。",
    ),
    ("longer than", "查询太长了，请缩短后再试。"),
    ("more than", "查询中的词语或运算符太多了，请删去一些。"),
    ("nothing to search for", "查询中没有可以搜索的文字。"),
    ("is empty", "请输入要搜索的内容。"),
    ("date", "日期写法无效，请使用 2024、2024-03 或 2024-03-01..2024-06-30 这样的格式。"),
    ("since is after until", "开始日期晚于结束日期。"),
]
_FIELD_NAMES = {
    "q": "查询",
    "page": "页码",
    "size": "每页条数",
    "sort": "排序方式",
    "year": "年份",
    "since": "开始日期",
    "until": "结束日期",
    "tag": "标签",
    "source": "来源",
    "site": "站点",
    "recent": "recent 参数",
    "strict": "strict 参数",
}
_CHINESE_FIELDS = {"page": "页码无效，或结果页太深。", "size": "每页条数无效。", "sort": "排序方式无效。"}


def chinese_message(err: QueryError) -> str:
    if err.field in _CHINESE_FIELDS:
        return _CHINESE_FIELDS[err.field]
    for needle, message in _CHINESE_MESSAGES:
        if needle in err.message:
            return message
    return "无法理解这个查询，请检查引号、OR 和字段（如 title:）的写法。"


def placeholder(eng: SearchEngine) -> str:
    """The box's example: the index's own most frequent title words, so it
    suggests something this index can answer."""
    words = cached_frequent_title_words(eng)
    return "输入关键词，如：" + "、".join(words) if words else DEFAULT_PLACEHOLDER


@bp.get("/")
def index():
    q = request.args.get("q", "").strip()
    eng = engine()
    if not q and not _filtered():
        return render_template(
            "home.html",
            facets=eng.overview(),
            stats=eng.stats(),
            link=link,
            placeholder=placeholder(eng),
            autofocus=True,
        )
    error = None
    result = None
    year = None
    try:
        args, year = _page_args()
        result = eng.search(search_request(args))
    except ValidationError as err:
        error = f"{_FIELD_NAMES.get(validation_to_api_error(err).field or '', '参数')}无效，请检查后重试。"
    except QueryError as err:
        error = chinese_message(err)
    if error:
        return render_template(
            "results.html", q=q, error=error, result=None, link=link, placeholder=placeholder(eng)
        ), 400
    assert result is not None
    last_page = max(1, min(-(-result.total // result.size), MAX_RESULT_DEPTH // result.size))
    return render_template(
        "results.html",
        q=q,
        error=None,
        result=result,
        hits=[
            (hit, safe_url(hit.url), Markup(hit.title_html), Markup(hit.snippet_html), _trail(hit))
            for hit in result.hits
        ],
        year=year,
        tags=request.args.getlist("tag"),
        sources=request.args.getlist("source"),
        sites=request.args.getlist("site"),
        since=request.args.get("since"),
        until=request.args.get("until"),
        sort_labels=SORT_LABELS,
        last_page=last_page,
        pages=_page_window(result.page, last_page),
        past_end=bool(result.total) and result.page > last_page,
        filtered=_filtered(),
        link=link,
        placeholder=placeholder(eng),
    )


def _trail(hit) -> str:
    """The breadcrumb after the site (which is shown as a link of its own)."""
    crumbs = hit.display_url or ""
    return crumbs[len(hit.site) :] if hit.site and crumbs.startswith(hit.site) else crumbs


def _page_window(page: int, last: int, width: int = 2) -> list[int]:
    return list(range(max(1, page - width), min(last, page + width) + 1))


@bp.get("/doc")
def document_by_id():
    doc_id = request.args.get("id")
    if not doc_id:
        abort(404, description="没有找到这篇文章。")
    return document(doc_id)


@bp.get("/doc/<path:doc_id>", merge_slashes=False)
def document(doc_id: str):
    eng = engine()
    doc = eng.document(doc_id)
    if doc is None:
        abort(404, description="没有找到这篇文章。")
    q = request.args.get("q", "").strip()
    terms = _highlight_terms(eng, q)
    paragraphs = [_marked(p.strip(), terms) for p in (doc.get("body") or "").split("\n\n") if p.strip()]
    marks = sum(p.count("<mark>") for p in paragraphs)
    for i, p in enumerate(paragraphs):
        if "<mark>" in p:
            paragraphs[i] = Markup(str(p).replace("<mark>", f'<mark id="{FIRST_MATCH_ID}">', 1))
            break
    return render_template(
        "doc.html",
        doc=doc,
        q=q,
        title_html=Markup(highlight_all(doc.get("title") or doc["id"], terms)),
        marks=marks,
        first_match=FIRST_MATCH_ID,
        back=link(page=request.args.get("page", 1, type=int)) if q or _filtered() else None,
        url=safe_url(doc.get("url")),
        paragraphs=paragraphs,
        related=[(r, safe_url(r.get("url"))) for r in eng.related(doc_id)],
        now=dt.date.today(),
        placeholder=placeholder(eng),
    )


def _highlight_terms(eng: SearchEngine, q: str) -> list[str]:
    """The words the results page marked for this query (none for a query
    the parser cannot read: the article is still worth showing)."""
    if not q:
        return []
    try:
        return parse_query(q).highlight_terms(eng.segmentation, eng.synonyms.alternatives)
    except QueryError:
        return []


#: Runs of spaces that carry layout (indented code, aligned columns), kept
#: as they are: the highlighter folds white space as snippets need.
_LAYOUT_SPACE = re.compile(r"(\n|\t|\s{2,})")


def _marked(text: str, terms: list[str]) -> Markup:
    """One paragraph, escaped, with the query's words marked and its line
    breaks and indentation kept (the page shows it ``pre-wrap``)."""
    if not terms:
        return escape(text)
    pieces = _LAYOUT_SPACE.split(text)
    return Markup(
        "".join(str(escape(piece)) if i % 2 else highlight_all(piece, terms) for i, piece in enumerate(pieces))
    )
