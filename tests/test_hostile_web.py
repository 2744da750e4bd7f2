"""Hostile and unlucky input to the query side: indexes missing what most
have (titles, dates), request parameters meant for Flask's url_for, ids and
tags that do not fit in a path or a query. Never a 500, never a traceback,
never a link that leads elsewhere."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from cli import cli
from search.engine import SearchRequest
from web import create_app


def _client(ix):
    app = create_app(ix.settings)
    app.config["TESTING"] = True
    return app.test_client()


def _hrefs(html: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="([^"]*)"', html)]


def test_a_question_over_an_untitled_answer(make_index):
    ix = make_index(
        [
            {"id": "untitled", "body": "汽车保险怎么理赔？先向保险公司报案，再提交理赔材料。"},
            {"id": "titled", "title": "汽车保险", "body": "车险理赔的流程。"},
        ]
    )
    assert "untitled" in ix.ids("汽车保险怎么理赔")
    r = _client(ix).get("/api/search", query_string={"q": "汽车保险怎么理赔"})
    assert r.status_code == 200 and r.get_json()["total"] == 2
    result = CliRunner().invoke(cli, ["--index", str(ix.settings.index), "query", "汽车保险怎么理赔"])
    assert result.exit_code == 0 and "Traceback" not in result.output


def test_date_sort_and_recency_with_nothing_dated(make_index):
    ix = make_index([{"id": "a", "title": "物流 海外仓"}, {"id": "b", "title": "物流"}])
    assert sorted(ix.ids("物流", sort="date")) == ["a", "b"]
    assert sorted(ix.ids("物流", recent=True)) == ["a", "b"]
    client = _client(ix)
    assert client.get("/api/search", query_string={"q": "物流", "sort": "date"}).status_code == 200
    page = client.get("/", query_string={"q": "物流"}).get_data(as_text=True)
    newest = next(h for h in _hrefs(page) if "sort=date" in h)
    assert client.get(newest).status_code == 200
    result = CliRunner().invoke(cli, ["--index", str(ix.settings.index), "query", "物流", "--sort", "date"])
    assert result.exit_code == 0, result.output


def test_date_sort_and_recency_when_the_first_segment_is_undated(make_index):
    ix = make_index([{"id": "undated", "title": "物流 新闻"}])
    ix.add([{"id": "old", "title": "物流 新闻", "published": "2001-01-01"}])
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    ix.add([{"id": "new", "title": "物流 新闻", "published": yesterday}])
    assert ix.engine.searcher().reader().is_atomic() is False  # three segments
    assert ix.ids("物流", sort="date") == ["new", "old", "undated"]
    ranked = ix.engine.search(SearchRequest(q="物流", recent=True)).hits
    assert ranked[0].id == "new" and ranked[0].score > ranked[-1].score


@pytest.mark.parametrize("year", ["%C2%B2", "²", "0", "10000", "abc", "2024x"])
def test_a_bad_year_is_a_400_page(make_index, year):
    ix = make_index([{"id": "a", "title": "物流"}])
    r = _client(ix).get(f"/?q=%E7%89%A9%E6%B5%81&year={year}")
    assert r.status_code == 400 and "年份" in r.get_data(as_text=True)


def test_request_parameters_never_reach_url_for(make_index):
    ix = make_index([{"id": f"d{i}", "title": f"物流 {i}", "tags": ["物流"]} for i in range(25)])
    r = _client(ix).get(
        "/?q=%E7%89%A9%E6%B5%81&_anchor=x&_scheme=javascript&_method=POST&_external=1",
        headers={"Host": "evil.example"},
    )
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    # The page's own links: not the articles' own URLs, the icon or the skip links.
    links = [
        h for h in _hrefs(page) if not h.startswith(("http://", "https://", "data:")) and h not in ("#main", "#filters")
    ]
    assert links and all(h.startswith("/") and not h.startswith("//") for h in links), links
    assert "evil.example" not in page and "_anchor" not in page and "javascript" not in page
    assert all("#" not in h for h in links)


WEIRD_IDS = ["/leading-slash", "line\nbreak", ".", "..", "a/b/../c", "a//b", "?q=1", "%2e%2e", "空 格"]


def test_every_id_is_reachable_and_no_link_leads_elsewhere(make_index):
    ix = make_index([{"id": i, "title": f"物流 第{n}篇", "body": f"正文{n}"} for n, i in enumerate(WEIRD_IDS)])
    client = _client(ix)
    page = client.get("/", query_string={"q": "物流", "size": 20}).get_data(as_text=True)
    doc_links = [h for h in _hrefs(page) if h.startswith("/doc")]
    assert len(doc_links) >= len(WEIRD_IDS)
    reached = set()
    for href in doc_links:
        # What a browser makes of the link: path normalisation must not move it.
        parts = urlsplit(href)
        assert parts.path == "/doc", href
        (doc_id,) = parse_qs(parts.query)["id"]
        r = client.get(href)
        assert r.status_code == 200, (href, r.status_code)
        assert f"物流 第{WEIRD_IDS.index(doc_id)}篇" in r.get_data(as_text=True)
        reached.add(doc_id)
        api = client.get("/api/doc", query_string={"id": doc_id})
        assert api.status_code == 200 and api.get_json()["document"]["id"] == doc_id
    assert reached == set(WEIRD_IDS)
    assert client.get("/api/doc", query_string={"id": "nope"}).status_code == 404


QUOTED_TAGS = ["“双十一”大促", "「独立站」", 'x"y', "tag:物流", "a OR b"]


def test_tag_chips_use_the_tag_filter(make_index):
    ix = make_index(
        [{"id": f"t{n}", "title": f"第{n}篇", "body": "促销活动", "tags": [t]} for n, t in enumerate(QUOTED_TAGS)]
        + [{"id": "other", "title": "别的", "body": "促销活动", "tags": ["其他"]}]
    )
    client = _client(ix)
    for n, tag in enumerate(QUOTED_TAGS):
        page = client.get("/doc", query_string={"id": f"t{n}"}).get_data(as_text=True)
        chip = next(h for h in _hrefs(page) if parse_qs(urlsplit(h).query).get("tag") == [tag])
        r = client.get(chip)
        assert r.status_code == 200, (tag, r.status_code)
        body = r.get_data(as_text=True)
        assert "找到 <strong>1</strong> 篇" in body and f"第{n}篇" in body, tag
    home = client.get("/").get_data(as_text=True)
    assert any(parse_qs(urlsplit(h).query).get("tag") == ["“双十一”大促"] for h in _hrefs(home))
