"""The HTML pages: the search page and the article page. Rendered on the
server so they work without JavaScript; the script only adds suggestions."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, abort, render_template, request, url_for
from markupsafe import Markup
from marshmallow import ValidationError

from search.engine import MAX_RESULT_DEPTH
from search.query import QueryError
from web import engine
from web.api import search_request
from web.errors import validation_to_api_error
from web.schemas import PageArgs

bp = Blueprint("views", __name__)

SORT_LABELS = {"relevance": "相关度", "date": "最新"}


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
    args = PageArgs().load(request.args)
    year = args.pop("year")
    if year is not None:
        args["since"] = dt.date(year, 1, 1)
        args["until"] = dt.date(year, 12, 31)
    return args, year


def _filtered() -> bool:
    return any(request.args.get(name) for name in ("tag", "source", "site", "since", "until", "year"))


@bp.app_template_global()
def doc_link(doc_id: str) -> str:
    """The article page of any id, as a query argument: an id in the path
    (``..``, ``a/../b``, a leading ``/``, a line break) can be resolved by
    the browser to another page, or not routed at all."""
    return url_for("views.document_by_id") + "?" + urlencode({"id": doc_id})


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


@bp.get("/")
def index():
    q = request.args.get("q", "").strip()
    eng = engine()
    if not q and not _filtered():
        return render_template("home.html", facets=eng.overview(), stats=eng.stats(), link=link)
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
        return render_template("results.html", q=q, error=error, result=None, link=link), 400
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
        link=link,
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
    paragraphs = [p.strip() for p in (doc.get("body") or "").split("\n\n") if p.strip()]
    return render_template(
        "doc.html",
        doc=doc,
        url=safe_url(doc.get("url")),
        paragraphs=paragraphs,
        related=[(r, safe_url(r.get("url"))) for r in eng.related(doc_id)],
        now=dt.date.today(),
    )
