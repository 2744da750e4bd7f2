"""The Flask app through its test client: every endpoint, error and
escaping case."""

from __future__ import annotations

import re
from html import escape, unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from openapi_spec_validator import validate

from web import create_app

from conftest import IndexHarness

XSS_RECORDS = [
    {
        "id": "xss-1",
        "url": "javascript:alert(document.cookie)",
        "title": "<script>alert('跨境')</script>跨境标题",
        "body": '正文<img src=x onerror="alert(1)">跨境电商<svg onload=alert(2)>结束。',
        "tags": ["<b>标签</b>"],
        "source": "<i>来源</i>",
        "author": '"><script>alert(3)</script>',
        "published": "2024-01-01",
    }
]


@pytest.fixture
def client(sample_index):
    app = create_app(sample_index.settings)
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def xss_client(make_index):
    ix = make_index(XSS_RECORDS)
    return create_app(ix.settings).test_client()


def test_api_search_shape_and_facets(client):
    r = client.get("/api/search", query_string={"q": "跨境电商", "size": 3})
    assert r.status_code == 200 and r.is_json
    data = r.get_json()
    assert set(data) == {
        "query",
        "total",
        "took_ms",
        "page",
        "size",
        "sort",
        "fallback",
        "results",
        "facets",
        "suggestion",
        "partial",
        "interpreted_as",
        "all_words",
        "corrected",
    }
    assert data["size"] == 3 and len(data["results"]) == 3 and data["total"] > 3
    hit = data["results"][0]
    assert set(hit) == {
        "id",
        "url",
        "title_html",
        "snippet_html",
        "tags",
        "source",
        "author",
        "published",
        "score",
        "site",
        "display_url",
    }
    assert "<mark>" in hit["title_html"] + hit["snippet_html"]
    assert set(data["facets"]) == {"tags", "sources", "sites", "years"}
    assert all({"value", "count"} == set(f) for f in data["facets"]["tags"])


def test_api_search_filters_sort_and_paging(client):
    args = {"q": "卖家", "tag": ["物流"], "since": "2023-01-01", "until": "2024-12-31", "sort": "date", "size": 5}
    data = client.get("/api/search", query_string=args).get_json()
    assert data["total"] > 0
    dates = [h["published"][:10] for h in data["results"]]
    assert dates == sorted(dates, reverse=True) and all("2023-01-01" <= d <= "2024-12-31" for d in dates)
    assert all("物流" in h["tags"] for h in data["results"])
    p2 = client.get("/api/search", query_string={**args, "page": 2}).get_json()
    assert not {h["id"] for h in data["results"]} & {h["id"] for h in p2["results"]}
    both = client.get("/api/search", query_string={"q": "卖家", "source": ["出海日报", "跨境观察"]}).get_json()
    assert {f["value"] for f in both["facets"]["sources"]} == {"出海日报", "跨境观察"}


def test_api_search_fallback_flag(client):
    data = client.get("/api/search", query_string={"q": "亚马逊 火星基地"}).get_json()
    assert data["fallback"] is True and data["total"] > 0


def test_api_and_page_offer_did_you_mean(client):
    # With autocorrect=0 (the page's 仍然搜索 link) a query finding nothing
    # gets the did-you-mean instead of its correction's results.
    data = client.get("/api/search", query_string={"q": "yamaxun", "autocorrect": "0"}).get_json()
    assert data["suggestion"] == "亚马逊"
    page = client.get("/", query_string={"q": "yamaxun", "autocorrect": "0"}).get_data(as_text=True)
    assert "你是不是要找" in page and "亚马逊" in page
    assert client.get("/api/search", query_string={"q": "亚马逊", "recent": "1"}).get_json()["total"] > 0


@pytest.mark.parametrize(
    "args, field, code",
    [
        ({}, "q", "invalid_parameter"),
        ({"q": ""}, "q", "invalid_parameter"),
        ({"q": "x" * 1001}, "q", "invalid_parameter"),
        ({"q": "电商", "size": 101}, "size", "invalid_parameter"),
        ({"q": "电商", "size": "ten"}, "size", "invalid_parameter"),
        ({"q": "电商", "page": 0}, "page", "invalid_parameter"),
        ({"q": "电商", "page": 2000}, "page", "bad_query"),
        ({"q": "电商", "sort": "random"}, "sort", "invalid_parameter"),
        ({"q": "电商", "since": "2024-02-30"}, "since", "invalid_parameter"),
        ({"q": "电商", "since": "2024-05-01", "until": "2024-01-01"}, "since", "bad_query"),
        # Broken syntax is searched as plain words unless strict=1 (see
        # test_broken_syntax_is_searched_as_plain_text_unless_strict).
        ({"q": '"跨境电商', "strict": "1"}, "q", "bad_query"),
        ({"q": "电商 OR", "strict": "1"}, "q", "bad_query"),
        ({"q": "date:2024-13", "strict": "1"}, "q", "bad_query"),
    ],
)
def test_api_search_bad_input_is_400_json(client, args, field, code):
    r = client.get("/api/search", query_string=args)
    assert r.status_code == 400 and r.is_json
    err = r.get_json()["error"]
    assert err["code"] == code and err["field"] == field and err["message"]


def test_api_doc_and_related(client):
    r = client.get("/api/doc/sample-023")
    assert r.status_code == 200
    data = r.get_json()
    assert data["document"]["id"] == "sample-023" and "iPhone 15" in data["document"]["body"]
    assert set(data["document"]) == {"id", "url", "title", "body", "tags", "published", "source", "author"}
    assert 0 < len(data["related"]) <= 5 and all(x["id"] != "sample-023" for x in data["related"])
    assert client.get("/api/doc/sample-023?related=0").get_json()["related"] == []
    assert client.get("/api/doc/sample-023?related=maybe").status_code == 400


def test_api_doc_ids_with_slashes_and_unknown_ids(make_index):
    ix = make_index([{"id": "https://a.example/news/1.html", "title": "带斜杠的编号"}])
    client = create_app(ix.settings).test_client()
    assert client.get("/api/doc/https://a.example/news/1.html").get_json()["document"]["title"] == "带斜杠的编号"
    assert client.get("/doc/https://a.example/news/1.html").status_code == 200
    missing = client.get("/api/doc/../../etc/passwd")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"


def test_api_suggest(client):
    data = client.get("/api/suggest", query_string={"q": "跨境电"}).get_json()
    assert "跨境电商" in data["suggestions"]
    assert client.get("/api/suggest", query_string={"q": "亞馬"}).get_json()["suggestions"][0] == "亚马逊"
    assert client.get("/api/suggest").status_code == 400


def test_api_health(client):
    data = client.get("/api/health").get_json()
    assert data == {"status": "ok", "generation": data["generation"], "documents": 60}
    assert data["generation"].startswith("gen-")


def test_api_never_answers_html(client, tmp_path):
    for path in ("/api/nothing", "/api/doc/", "/api"):
        r = client.get(path)
        assert r.status_code == 404 and r.is_json, path
    r = client.post("/api/search", data={"q": "x"})
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"
    empty = create_app({"index": tmp_path / "none"}).test_client()
    r = empty.get("/api/search?q=x")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "no_index"


def test_openapi_document_is_valid_and_covers_every_api_route(client):
    r = client.get("/api/openapi.json")
    spec = r.get_json()
    validate(spec)
    documented = set(spec["paths"])
    routes = {
        rule.rule.replace("<path:doc_id>", "{id}")
        for rule in client.application.url_map.iter_rules()
        if rule.rule.startswith("/api/")
    }
    assert routes == documented
    params = {p["name"] for p in spec["paths"]["/api/search"]["get"]["parameters"]}
    assert params == {
        "q",
        "page",
        "size",
        "sort",
        "tag",
        "source",
        "site",
        "since",
        "until",
        "recent",
        "strict",
        "autocorrect",
        "facets",
    }


def test_search_page_renders_results_facets_and_paging(client):
    r = client.get("/", query_string={"q": "跨境电商"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert 'value="跨境电商"' in html
    assert "<mark>" in html and "篇文章" in html and "毫秒" in html
    assert 'aria-label="分页"' in html and "下一页" in html
    assert "标签" in html and "来源" in html and "年份" in html
    page2 = client.get("/", query_string={"q": "跨境电商", "page": 2}).get_data(as_text=True)
    assert 'aria-current="page">2<' in page2 and "上一页" in page2


def test_search_page_filters_are_visible_and_removable(client):
    html = client.get("/", query_string={"q": "卖家", "tag": "物流", "year": "2024"}).get_data(as_text=True)
    assert "标签：物流" in html and "年份：2024" in html
    assert 'href="/?q=%E5%8D%96%E5%AE%B6&amp;year=2024"' in html  # removing the tag keeps the year


def test_search_page_empty_and_error_states(client):
    empty = client.get("/", query_string={"q": "zzqxv", "tag": "物流"}).get_data(as_text=True)
    assert "没有找到与" in empty and "去掉所有筛选条件" in empty
    # An unclosed quote is now searched as plain text (see
    # test_broken_syntax_is_searched_as_plain_text_unless_strict); a query
    # with nothing but an operator is still an error.
    bad = client.get("/", query_string={"q": "OR"})
    assert bad.status_code == 400 and "无法理解这个查询" in bad.get_data(as_text=True)
    assert client.get("/", query_string={"q": "电商", "year": "abc"}).status_code == 400


def test_home_page_and_article_page(client):
    home = client.get("/").get_data(as_text=True)
    assert "热门标签" in home and "60" in home
    doc = client.get("/doc/sample-001")
    html = doc.get_data(as_text=True)
    assert doc.status_code == 200 and "相关文章" in html and "阅读原文" in html
    assert client.get("/doc/nope").status_code == 404


def test_everything_from_crawled_content_is_escaped(xss_client):
    page = xss_client.get("/", query_string={"q": "跨境"}).get_data(as_text=True)
    doc = xss_client.get("/doc/xss-1").get_data(as_text=True)
    api = xss_client.get("/api/search", query_string={"q": "跨境"}).get_json()["results"][0]
    for html in (page, doc):
        assert "<script>alert" not in html and "<img src=x" not in html and "<svg" not in html
        assert "<b>标签</b>" not in html and "<i>来源</i>" not in html
        assert 'href="javascript' not in html.replace(" ", "")  # the unsafe URL is never a link
    for fragment in (api["title_html"], api["snippet_html"]):
        assert fragment.replace("<mark>", "").replace("</mark>", "").count("<") == 0


def test_security_headers(client):
    r = client.get("/")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"]
    assert client.get("/api/health").headers["X-Content-Type-Options"] == "nosniff"


def test_fresh_articles_appear_without_restart(make_index):
    ix = make_index([{"id": "a", "title": "第一篇 物流"}])
    client = create_app(ix.settings).test_client()
    assert client.get("/api/search?q=物流").get_json()["total"] == 1
    before = client.get("/api/health").get_json()["generation"]
    ix.add([{"id": "b", "title": "第二篇 物流"}, {"id": "a", "deleted": True}])
    data = client.get("/api/search?q=物流").get_json()
    assert [h["id"] for h in data["results"]] == ["b"]
    assert client.get("/api/health").get_json()["generation"] != before


def test_no_write_or_delete_over_http(client):
    for method in ("post", "put", "delete", "patch"):
        r = getattr(client, method)("/api/doc/sample-001")
        assert r.status_code == 405 and r.is_json
    assert client.get("/api/doc/sample-001").status_code == 200


def test_a_damaged_index_is_a_503_without_a_traceback(make_index):
    ix = make_index([{"id": "a", "title": "物流"}])
    app = create_app(ix.settings)
    assert app.debug is False
    client = app.test_client()
    generation = next(p for p in ix.settings.index.iterdir() if p.name.startswith("gen-"))
    for segment in generation.glob("*.seg"):
        segment.write_bytes(b"\x00" * 64)  # a disk fault under a running service
    (generation / "_MAIN_2.toc").write_bytes(b"garbage")  # force a reopen
    for path in ("/api/search?q=物流", "/?q=物流"):
        r = client.get(path)
        assert r.status_code == 503, path
        body = r.get_data(as_text=True)
        assert "Traceback" not in body and 'File "' not in body and "Werkzeug" not in body
    assert client.get("/api/search?q=物流").get_json()["error"]["code"] == "index_damaged"


@pytest.mark.parametrize(
    ("q", "searched"),
    [('"未闭合 物流', "未闭合 物流"), ("物流 OR", "物流"), ("-广告", "广告"), ("date:明天 物流", "date 明天 物流")],
)
def test_broken_syntax_is_searched_as_plain_text_unless_strict(client, q, searched):
    data = client.get("/api/search", query_string={"q": q}).get_json()
    assert data["interpreted_as"] == searched
    assert data["total"] == client.get("/api/search", query_string={"q": searched}).get_json()["total"] > 0
    strict = client.get("/api/search", query_string={"q": q, "strict": "1"})
    assert strict.status_code == 400 and strict.get_json()["error"]["code"] == "bad_query"
    page = client.get("/", query_string={"q": q})
    assert page.status_code == 200
    assert "已按普通文字搜索" in page.get_data(as_text=True)
    clean = client.get("/api/search", query_string={"q": "物流"}).get_json()
    assert clean["interpreted_as"] is None


@pytest.mark.parametrize("q", ["物流" * 600, "OR", "物流 page"])
def test_page_messages_are_in_chinese(client, q):
    extra = {"page": "0"} if q == "物流 page" else {}
    resp = client.get("/", query_string={"q": q, **extra})
    assert resp.status_code == 400
    text = resp.get_data(as_text=True)
    notice = text.split('role="alert"', 1)[1].split("</section>", 1)[0]
    words = re.sub(r"<[^>]+>", "", notice)
    words = re.sub(r"(OR|title|author|tag|source|date|site):?", "", words)  # the query syntax itself
    assert not re.search(r"[A-Za-z]{3,}", words), notice


def test_questions_and_fallbacks_say_how_many_hold_every_word(client):
    def search(q: str) -> dict:
        return client.get("/api/search", query_string={"q": q}).get_json()

    question = search("海外仓物流怎么做")
    every = search("海外仓 物流")  # its content words, all required
    assert not every["fallback"] and question["all_words"] == every["total"]
    assert 0 < question["all_words"] < question["total"]
    page = client.get("/", query_string={"q": "海外仓物流怎么做"}).get_data(as_text=True)
    rest = question["total"] - question["all_words"]
    assert f"其中 {question['all_words']} 篇包含全部词语，其余 {rest} 篇只包含部分词语" in page
    fallback = search("亚马逊 火星")
    assert fallback["fallback"] and fallback["all_words"] == 0 and fallback["total"] > 0
    plain = search("亚马逊")
    assert plain["all_words"] is None


def test_a_query_finding_nothing_is_answered_with_its_correction(client):
    data = client.get("/api/search", query_string={"q": "yamaxun"}).get_json()
    assert data["corrected"] == {"from": "yamaxun", "to": "亚马逊"} and data["suggestion"] is None
    assert data["total"] > 0 and all("亚马逊" in r["title_html"] + r["snippet_html"] for r in data["results"][:3])
    exact = client.get("/api/search", query_string={"q": "yamaxun", "autocorrect": "0"}).get_json()
    assert exact["corrected"] is None and exact["total"] == 0 and exact["suggestion"] == "亚马逊"
    for typed, meant in [("ymx", "亚马逊"), ("亚码逊", "亚马逊"), ("kuajingdianshang", "跨境电商")]:
        assert client.get("/api/search", query_string={"q": typed}).get_json()["corrected"]["to"] == meant
    found = client.get("/api/search", query_string={"q": "物流"}).get_json()
    assert found["corrected"] is None
    # A correction that finds articles only by some of its words is offered,
    # not searched instead.
    partly = client.get("/api/search", query_string={"q": "亚码逊 火星"}).get_json()
    assert partly["corrected"] is None and partly["suggestion"] == "亚马逊 火星" and not partly["fallback"]
    page = client.get("/", query_string={"q": "yamaxun"}).get_data(as_text=True)
    assert "已显示“亚马逊”的搜索结果。仍然搜索：" in page and "autocorrect=0" in page


def test_long_pinyin_and_homophone_typos_are_corrected_from_the_vocabulary(make_index):
    ix = make_index(
        [{"id": f"fw{i}", "title": f"防火墙设置第{i}课", "body": "配置防火墙规则，开放端口。"} for i in range(3)]
        + [{"id": f"sj{i}", "title": f"数据透视表入门{i}", "body": "用数据透视表汇总销售数据。"} for i in range(3)]
    )
    client = create_app(ix.settings).test_client()

    def corrected(q: str) -> dict | None:
        return client.get("/api/search", query_string={"q": q}).get_json()["corrected"]

    assert corrected("防火强") == {"from": "防火强", "to": "防火墙"}
    assert corrected("fanghuoqiang") == {"from": "fanghuoqiang", "to": "防火墙"}
    long = corrected("shujutoushi")
    assert long is not None and long["to"].startswith("数据") and "透视" in long["to"]
    assert corrected("防火墙") is None


def _hrefs(html: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="([^"]*)"', html)]


def test_pager_has_first_and_last_page_links(client):
    first = client.get("/", query_string={"q": "卖家"}).get_data(as_text=True)
    last_page = int(re.search(r'class="last" href="[^"]*page=(\d+)"', first).group(1))
    assert last_page >= 4 and "首页" not in first  # page 1 is in the window
    last = client.get("/", query_string={"q": "卖家", "page": last_page}).get_data(as_text=True)
    assert f'aria-current="page">{last_page}<' in last and "下一页" not in last and 'class="last"' not in last
    assert '<a class="first" href="/?q=%E5%8D%96%E5%AE%B6">首页</a>' in last
    assert client.get(f"/?q=%E5%8D%96%E5%AE%B6&page={last_page}").get_data(as_text=True).count('class="hit"') > 0


def test_a_page_past_the_end_says_so_and_links_to_the_last(client):
    first = client.get("/", query_string={"q": "卖家"}).get_data(as_text=True)
    last_page = int(re.search(r'class="last" href="[^"]*page=(\d+)"', first).group(1))
    r = client.get("/", query_string={"q": "卖家", "page": 99})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "第 99 页已超出结果范围" in html
    assert f'<a href="/?q=%E5%8D%96%E5%AE%B6&amp;page={last_page}">转到最后一页（第 {last_page} 页）</a>' in html
    assert 'class="hit"' not in html and 'aria-label="分页"' not in html
    assert "已超出结果范围" not in client.get("/", query_string={"q": "卖家", "page": last_page}).get_data(as_text=True)


def _placeholder(html: str) -> str:
    return unescape(re.search(r'<input id="q"[^>]* placeholder="([^"]*)"', html).group(1))


def test_placeholder_comes_from_the_index_own_words(client, make_index, tmp_path):
    sample = _placeholder(client.get("/").get_data(as_text=True))
    assert sample.startswith("输入关键词，如：") and "卖家" in sample
    for word in sample.removeprefix("输入关键词，如：").split("、"):
        assert client.get("/api/search", query_string={"q": word}).get_json()["total"] > 1, word
    ix = make_index([{"id": f"i{n}", "title": f"汽车保险理赔 第{n}问", "body": "保险"} for n in range(5)])
    other = _placeholder(create_app(ix.settings).test_client().get("/").get_data(as_text=True))
    assert "保险" in other and "卖家" not in other and "跨境" not in other
    empty = IndexHarness(tmp_path / "untitled")
    empty.add([{"id": "untitled", "body": "只有正文"}])
    assert _placeholder(create_app(empty.settings).test_client().get("/").get_data(as_text=True)) == "输入关键词"


def test_home_tags_apply_the_tag_filter(client):
    home = client.get("/").get_data(as_text=True)
    tag_links = [h for h in _hrefs(home) if "tag" in h]
    assert tag_links and all(set(parse_qs(urlsplit(h).query)) == {"tag"} for h in tag_links)
    assert 'id="q" name="q" type="search" value="" ' in home and " autofocus" in home
    html = client.get(tag_links[0]).get_data(as_text=True)
    tag = parse_qs(urlsplit(tag_links[0]).query)["tag"][0]
    assert 'id="q" name="q" type="search" value="" ' in html  # nothing put into the box
    assert f'<input type="hidden" name="tag" value="{tag}">' in html and f"标签：{tag}" in html
    assert "<h1" in html and " autofocus" not in html


def test_results_link_to_the_article_page_with_the_search(client):
    html = client.get("/", query_string={"q": "跨境电商", "tag": "物流"}).get_data(as_text=True)
    doc_links = [h for h in _hrefs(html) if h.startswith("/doc")]
    assert doc_links and all(re.fullmatch(r"/doc/sample-\d{3}\?q=[^&#]+&tag=[^&#]+", h) for h in doc_links), doc_links
    assert parse_qs(urlsplit(doc_links[0]).query) == {"q": ["跨境电商"], "tag": ["物流"]}


def test_article_page_keeps_and_marks_the_query(client):
    r = client.get("/doc/sample-046", query_string={"q": "跨境电商", "tag": "物流", "page": "2"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and 'value="跨境电商"' in html
    body = html[html.index('<div class="body">') :]
    assert body.count("<mark") >= 2 and body.index('<mark id="first-match">') == body.index("<mark")
    assert '<a class="jump" href="#first-match">跳到第一处匹配</a>' in html
    back = next(h for h in _hrefs(html) if "返回搜索结果" in html.split(f'href="{escape(h)}"', 1)[1][:20])
    assert parse_qs(urlsplit(back).query) == {"q": ["跨境电商"], "tag": ["物流"], "page": ["2"]}
    assert urlsplit(back).path == "/"
    # Without a query: no marks, no jump, no way back to results there were none of.
    plain = client.get("/doc/sample-046").get_data(as_text=True)
    assert "<mark" not in plain and "跳到第一处匹配" not in plain and "返回搜索结果" not in plain
    # A query the article does not hold, or one the parser cannot read.
    assert "正文中没有" in client.get("/doc/sample-046", query_string={"q": "zzqxv"}).get_data(as_text=True)
    assert client.get("/doc/sample-046", query_string={"q": '"跨境'}).status_code == 200


def test_article_page_marks_are_the_only_markup(xss_client):
    html = xss_client.get("/doc/xss-1", query_string={"q": "跨境 <script>"}).get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html and "<svg" not in html
    title = re.search(r'<article class="doc">\s*<h1>(.*?)</h1>', html, re.S).group(1)
    body = re.search(r'<div class="body">(.*?)</div>', html, re.S).group(1).replace("<p>", "").replace("</p>", "")
    assert "<mark>跨境</mark>" in title and '<mark id="first-match">跨境</mark>' in body
    for fragment in (title, body):
        assert re.sub(r'<mark( id="first-match")?>|</mark>', "", fragment).count("<") == 0, fragment


def test_article_page_keeps_line_breaks_and_indentation_when_marking(make_index):
    body = "示例代码如下：\n  apt-get install 软件包\n\t软件包  已安装"
    ix = make_index([{"id": "code", "title": "安装软件包", "body": body}])
    html = create_app(ix.settings).test_client().get("/doc/code", query_string={"q": "软件包"}).get_data(as_text=True)
    para = re.search(r'<div class="body">\s*<p>(.*?)</p>', html, re.S).group(1)
    assert para.replace("<mark>", "").replace('<mark id="first-match">', "").replace("</mark>", "") == body
    assert para.count("<mark") == 2


def test_facets_can_be_skipped_on_the_api_but_not_on_the_page(client):
    """Counting facets was a third of an API search's CPU; a caller that
    shows none can say so."""
    full = client.get("/api/search", query_string={"q": "物流"}).get_json()
    lean = client.get("/api/search", query_string={"q": "物流", "facets": "false"}).get_json()
    assert full["facets"]["tags"] and lean["facets"] is None
    assert [r["id"] for r in lean["results"]] == [r["id"] for r in full["results"]]
    page = client.get("/", query_string={"q": "物流", "facets": "false"}).get_data(as_text=True)
    assert "标签" in page and 'class="facets' in page
