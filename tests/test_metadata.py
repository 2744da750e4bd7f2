"""Crawl metadata people can trust: titles, sources, authors, dates and tags
from structure first, clean bodies, and a site for every page.

The pages are small fixtures written for these tests (``fixtures/crawl``): a
portal (``haifeng/``) whose titles end with ``-海风网`` and name no source,
and a help site (``help/``) whose pages quote example dates and mention
来源 in running text, with a site rule (``fixtures/crawl-rules.toml``) that
drops the article's ``<meta>`` elements.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest

from indexer.html import extract
from indexer.siterules import load_rules
from indexer.sites import display_url, site_of
from indexer.titles import SiteNames, choose_title
from indexer.writer import index_paths

from conftest import PARAS, IndexHarness

FIXTURES = Path(__file__).parent / "fixtures"
CRAWL = FIXTURES / "crawl"
RULES = FIXTURES / "crawl-rules.toml"
LOGISTICS = CRAWL / "haifeng" / "news" / "logistics.html"
DATE_HELP = CRAWL / "help" / "text" / "calc" / "date.html"
FORMAT_HELP = CRAWL / "help" / "text" / "calc" / "format.html"
#: The crawl's files are dated this, as a crawler leaves them.
SAVED = dt.datetime(2024, 3, 5, 8, 0, tzinfo=dt.UTC)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def crawl_copy(tmp_path_factory) -> Path:
    """The fixture crawl with file dates set, as a crawler saved it."""
    root = tmp_path_factory.mktemp("crawl") / "crawl"
    shutil.copytree(CRAWL, root)
    for path in root.rglob("*.html"):
        os.utime(path, (SAVED.timestamp(), SAVED.timestamp()))
    return root


@pytest.fixture(scope="module")
def crawled(crawl_copy, tmp_path_factory) -> IndexHarness:
    """The fixture crawl indexed without site rules."""
    ix = IndexHarness(tmp_path_factory.mktemp("plain"))
    summary = index_paths(ix.settings, [str(crawl_copy)])
    assert summary.added == 5 and not summary.rejected and not summary.skipped
    return ix


@pytest.fixture(scope="module")
def ruled(crawl_copy, tmp_path_factory) -> IndexHarness:
    """The fixture crawl indexed with its site rule."""
    ix = IndexHarness(tmp_path_factory.mktemp("ruled"), site_rules=str(RULES))
    summary = index_paths(ix.settings, [str(crawl_copy)])
    assert summary.added == 5 and not summary.rejected
    return ix


# -- titles ---------------------------------------------------------------


def test_title_without_a_hyphen_joined_site_suffix():
    # The <h1> is the bare title: the rest of the <title> is the site's.
    page = extract(_read(LOGISTICS))
    assert page.raw_title == "独立站物流旺季备货指南-海风网"
    assert page.title == "独立站物流旺季备货指南"
    # A hyphen with no spaces is no separator on its own (柱-线图, Wi-Fi) ...
    assert choose_title("东南亚直播带货观察-海风网") == "东南亚直播带货观察-海风网"
    assert choose_title("图表类型 柱-线图") == "图表类型 柱-线图"
    # ... a tail that most of the site's titles end with is the site's name.
    names = SiteNames()
    for title in ("独立站物流旺季备货指南-海风网", "东南亚直播带货观察-海风网", "欧盟增值税新规解读-海风网"):
        names.observe("haifeng", title)
    assert names.name("haifeng") == "海风网"
    assert choose_title("东南亚直播带货观察-海风网", names=names, site="haifeng") == "东南亚直播带货观察"


def test_a_tail_that_belongs_to_the_title_is_kept():
    # Help pages: many titles with a dash, no tail shared by the site.
    names = SiteNames()
    wizard = [f"表单向导 - {step}" for step in ("选择数据库", "设置名称", "排列控件", "应用样式", "设置子表单")]
    for title in wizard:
        names.observe("help", title)
    assert names.name("help") is None
    assert choose_title("表单向导 - 设置名称", names=names, site="help") == "表单向导 - 设置名称"
    # The <h1> names the title when it is a part of the <title>, not any substring of it.
    assert choose_title("换行符", h1="换行") == "换行符"
    assert choose_title("出海日报 | 黑五备货观察 | 跨境", h1="黑五备货观察") == "黑五备货观察"


def test_titles_and_source_learned_from_the_sites_pages(crawled):
    docs = {d["id"]: d for d in (crawled.engine.document(i) for i in _ids(crawled))}
    portal = [d for i, d in docs.items() if i.startswith("haifeng/")]
    assert {d["title"] for d in portal} == {"独立站物流旺季备货指南", "东南亚直播带货观察", "欧盟增值税新规解读"}
    assert {d["source"] for d in portal} == {"海风网"}


def _ids(ix: IndexHarness) -> list[str]:
    return [h.id for h in ix.search("", tags=(), sites=("haifeng", "help"), size=100).hits]


# -- authors and sources --------------------------------------------------


def test_meta_author_is_read():
    head = '<meta name="author" content="周宁">'
    html = f"<html><head><title>标题</title>{head}</head><body><article><h1>标题</h1>{PARAS}</article></body></html>"
    assert extract(html).author == "周宁"
    json_ld = '<script type="application/ld+json">{"@type": "NewsArticle", "author": [{"name": "林舟"}]}</script>'
    assert extract(html.replace(head, json_ld)).author == "林舟"
    byline = html.replace(head, "").replace("</h1>", "</h1><p>作者：韩梅</p>")
    assert extract(byline).author == "韩梅"


def test_a_sentence_mentioning_a_source_is_not_the_source(crawled):
    page = extract(_read(FORMAT_HELP))
    assert page.source is None  # 数据库来源 in a sentence; 来源： opening a sentence
    assert crawled.engine.document("help/text/calc/format.html")["source"] == "help"  # the top folder
    portal = extract(_read(LOGISTICS))
    assert "数据来源" in portal.body and portal.source is None
    short = "<html><body><h1>标题</h1><p>来源：出海日报</p>" + PARAS + "</body></html>"
    assert extract(short).source == "出海日报"
    publisher = (
        '<script type="application/ld+json">{"@type": "NewsArticle", "publisher": {"name": "环球商贸"}}</script>'
    )
    assert extract(f"<html><head>{publisher}</head><body><h1>标题</h1>{PARAS}</body></html>").source == "环球商贸"


def test_source_of_a_page_with_a_url_is_its_host(make_index, tmp_path):
    html = f"<html><head><title>黑五备货观察</title></head><body><h1>黑五备货观察</h1>{PARAS}</body></html>"
    ix = make_index()
    ix.add(
        [{"url": "https://news.example.com/a/1.html", "html": html}, {"id": "x-1", "title": "无网址", "body": "正文"}]
    )
    doc = ix.engine.document("https://news.example.com/a/1.html")
    assert doc["source"] == "news.example.com"
    assert ix.engine.document("x-1")["source"] is None  # nothing says where it is from


# -- dates ----------------------------------------------------------------


def test_example_dates_in_the_text_are_not_the_date(crawled):
    page = extract(_read(DATE_HELP), rules=load_rules(RULES), location="help/text/calc/date.html")
    assert "DATE(1954;7;20)" in page.body and "1899-12-30" in page.body
    assert page.published is None
    assert crawled.engine.document("help/text/calc/date.html")["published"] is None
    # A date written in running text further down is not the page's either.
    late = f"<html><body><h1>标题</h1>{PARAS}<p>2020-06-01</p>{PARAS}</body></html>"
    assert extract(late).published is None


def test_dates_from_structure_and_from_the_line_under_the_title():
    assert extract(_read(LOGISTICS)).published == dt.datetime(2023, 5, 6, 9, 30)
    tomorrow = dt.date.today() + dt.timedelta(days=2)
    future = f"<html><body><h1>标题</h1><p>{tomorrow.isoformat()}</p>{PARAS}</body></html>"
    assert extract(future).published is None
    timed = f'<html><body><h1>标题</h1><time datetime="2019-04-02T10:00:00+08:00">昨天</time>{PARAS}</body></html>'
    assert extract(timed).published.isoformat() == "2019-04-02T10:00:00+08:00"
    excel_zero = '<script type="application/ld+json">{"datePublished": "1899-12-30"}</script>'
    assert extract(f"<html><head>{excel_zero}</head><body><h1>标题</h1>{PARAS}</body></html>").published is None


def test_the_crawl_date_is_kept_apart_from_the_published_date(crawled, client_for):
    doc = crawled.engine.document("haifeng/news/vat.html")
    assert doc["crawled"] == SAVED.isoformat()  # the file's modification time
    assert doc["published"] is None  # not the crawl date
    page = client_for(crawled).get("/doc", query_string={"id": "haifeng/news/vat.html"}).get_data(as_text=True)
    assert "抓取于" in page and "2024-03-05" in page


# -- site rules -----------------------------------------------------------


def test_site_rules_keep_head_metadata(crawled, ruled):
    rules = load_rules(RULES)
    page = extract(_read(DATE_HELP), rules=rules, location="help/text/calc/date.html")
    assert page.extractor == "rule:example-help"
    # The rule drops <meta> from the article; keywords, microdata entries and
    # JSON-LD are still read from the whole page.
    assert page.tags == ["日期函数", "电子表格", "DATE 函数", "日期", "计算"]
    assert page.author == "示例文档团队"
    assert "macOS" not in page.body and "debug" not in page.body
    for ix in (crawled, ruled):
        doc = ix.engine.document("help/text/calc/date.html")
        assert doc["tags"] == ["日期函数", "电子表格", "DATE 函数", "日期", "计算"]
    assert ruled.engine.document("help/text/calc/date.html")["source"] == "示例帮助"  # the rule's source
    assert ruled.ids("", tags=("计算",)) == ["help/text/calc/date.html"]


# -- bodies ---------------------------------------------------------------


def test_table_rows_without_pipes(ruled):
    page = extract(_read(LOGISTICS))
    assert "渠道\t时效\t涨幅\n美线空运\t7 天\t三成\n欧洲专线\t12 天\t两成" in page.body
    assert "|" not in page.body
    ruled_body = ruled.engine.document("help/text/calc/date.html")["body"]
    assert "公式\t结果\n=DATE(2000;1;1)\t2000-01-01" in ruled_body and "|" not in ruled_body


def test_navigation_and_repeated_title_lines_are_removed_paragraphs_kept():
    body = extract(_read(LOGISTICS)).body
    assert "物流频道" not in body and "关于我们" not in body
    assert "独立站物流旺季备货指南" not in body  # the title, printed again above the text
    assert body.startswith("每年第四季度")
    assert body.count("\n\n") == 4  # five paragraphs, the table one of them


# -- sites and breadcrumbs ------------------------------------------------


def test_site_and_display_url():
    assert site_of("https://www.example.com/a/b.html") == "example.com"
    assert site_of(None, "libreoffice-help-zh-cn/usr/a.html") == "libreoffice-help-zh-cn"
    assert site_of(None, "a.html", "pages") == "pages"
    url = "https://help.libreoffice.org/7.4/zh-CN/text/scalc/main0200.html"
    assert display_url(url) == "help.libreoffice.org › 7.4 › zh-CN › text › scalc › main0200"
    assert display_url("https://news.example.com/%E6%96%B0%E9%97%BB/index.html") == "news.example.com › 新闻"
    local = "libreoffice-help-zh-cn/usr/share/libreoffice/help/zh-CN/text/scalc/main0200.html"
    assert display_url(None, local, "libreoffice-help-zh-cn") == (
        "libreoffice-help-zh-cn › … › help › zh-CN › text › scalc › main0200"
    )
    assert display_url(None, "sample-001", None) is None


def test_hits_carry_site_and_display_url_and_the_sites_facet_filters(crawled):
    result = crawled.search("物流", facets=True)
    hit = next(h for h in result.hits if h.id == "haifeng/news/logistics.html")
    assert hit.site == "haifeng" and hit.display_url == "haifeng › news › logistics"
    result = crawled.search("格式 OR 物流 OR 增值税", facets=True)
    assert {f["value"]: f["count"] for f in result.facets["sites"]} == {"haifeng": 3, "help": 2}
    assert {h.site for h in crawled.search("格式 OR 物流 OR 增值税", sites=("help",)).hits} == {"help"}
    assert {h.site for h in crawled.search("site:haifeng 格式 OR 物流 OR 增值税").hits} == {"haifeng"}
    assert crawled.search("site:elsewhere 物流").total == 0


def test_api_and_page_show_site_and_breadcrumb(crawled, client_for):
    client = client_for(crawled)
    data = client.get("/api/search", query_string={"q": "物流 OR 格式"}).get_json()
    by_id = {h["id"]: h for h in data["results"]}
    assert by_id["help/text/calc/format.html"]["display_url"] == "help › text › calc › format"
    assert by_id["help/text/calc/format.html"]["site"] == "help"
    assert {f["value"]: f["count"] for f in data["facets"]["sites"]} == {"haifeng": 2, "help": 2}
    only = client.get("/api/search", query_string={"q": "物流 OR 格式", "site": "haifeng"}).get_json()
    assert {h["site"] for h in only["results"]} == {"haifeng"}
    bad = client.get("/api/search", query_string={"q": "物流", "site": ""})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "site"
    page = client.get("/", query_string={"q": "物流", "site": "haifeng"}).get_data(as_text=True)
    assert '<p class="where"><a class="site"' in page and "› news › logistics" in page
    assert "站点：haifeng" in page  # the active filter, removable


def test_cli_shows_site_and_breadcrumb(crawled):
    from click.testing import CliRunner

    from cli import cli

    index = ["--index", str(crawled.settings.index)]
    human = CliRunner().invoke(cli, [*index, "query", "增值税"])
    assert human.exit_code == 0, human.output
    lines = human.output.splitlines()
    title = next(i for i, line in enumerate(lines) if line.endswith("欧盟增值税新规解读"))
    assert lines[title + 1].strip() == "haifeng › news › vat"  # right under the title
    as_json = CliRunner().invoke(cli, [*index, "query", "增值税", "--site", "haifeng", "--json"])
    hit = json.loads(as_json.output)["results"][0]
    assert (hit["site"], hit["display_url"]) == ("haifeng", "haifeng › news › vat")
    elsewhere = CliRunner().invoke(cli, [*index, "query", "增值税", "--site", "help", "--json"])
    assert json.loads(elsewhere.output)["total"] == 0


@pytest.fixture
def client_for():
    from web import create_app

    return lambda ix: create_app(ix.settings).test_client()
