"""Crawled HTML: decoding, extraction, metadata, duplicates, rebuilds, pruning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from indexer.html import decode, extract
from indexer.siterules import load_rules
from indexer.store import IndexStore
from indexer.writer import RunRefused, index_paths

from conftest import PARAS, IndexHarness, search_command, write_jsonl

FIXTURES = Path(__file__).parent / "fixtures"
PORTAL = FIXTURES / "portal-article.html"


def page(title: str, body_html: str, head: str = "", charset: str = "utf-8", h1: str | None = None) -> str:
    h1 = title if h1 is None else h1
    return (
        f'<!doctype html><html><head><meta charset="{charset}"><title>{title}</title>{head}</head>'
        f"<body><nav><a href='/'>首页</a> <a href='/news'>新闻</a></nav><article><h1>{h1}</h1>{body_html}</article>"
        "<footer>版权所有 示例网站</footer></body></html>"
    )


def test_portal_page_indexes_as_one_clean_article(make_index):
    ix = make_index()
    summary = index_paths(ix.settings, [str(PORTAL)])
    assert (summary.pages, summary.extracted, summary.added) == (1, 1, 1)
    doc = ix.engine.document("portal-article.html")
    assert doc["title"] == "独立站卖家如何应对物流旺季涨价"
    assert doc["published"] == "2021-09-15T10:32:00"
    assert doc["author"] == "周宁" and doc["source"] == "海风观察"
    assert set(doc["tags"]) == {"独立站", "物流", "旺季"}
    body = doc["body"]
    assert body.count("每年第四季度都是跨境物流的传统旺季") == 1  # printed twice on the page
    assert body.count("\n\n") == 4  # five paragraphs
    for chrome in ("热门文章", "宠物用品出海", "欧盟增值税", "版权所有", "分享到微信", "关于我们", "登录", "浏览 2381"):
        assert chrome not in body, chrome
    assert ix.ids("海外仓 旺季") == ["portal-article.html"]
    assert ix.ids("宠物用品") == []


def test_gbk_pages_with_and_without_a_declaration(tmp_path):
    text = page("跨境电商新规解读", PARAS, charset="gbk")
    declared = text.encode("gbk")
    assert decode(declared) == (text, "gb18030")
    undeclared = text.replace('<meta charset="gbk">', "").encode("gb18030")
    decoded, encoding = decode(undeclared)
    assert "跨境电商新规解读" in decoded and encoding.lower().startswith("gb")
    assert decode(b"\xef\xbb\xbf" + "<p>中文</p>".encode())[0] == "<p>中文</p>"
    (tmp_path / "gbk.html").write_bytes(declared)
    ix = IndexHarness(tmp_path / "ix")
    summary = index_paths(ix.settings, [str(tmp_path / "gbk.html")])
    assert summary.encodings == {"gb18030": 1}
    assert ix.ids("新规解读") == ["gbk.html"]


def test_metadata_from_meta_tags_json_ld_and_canonical():
    head = (
        '<link rel="canonical" href="https://news.example.com/a/1.html">'
        '<meta property="og:title" content="黑五备货观察">'
        '<meta property="og:site_name" content="出海日报">'
        '<meta property="article:tag" content="黑色星期五"><meta property="article:tag" content="广告">'
        '<script type="application/ld+json">{"@type": "NewsArticle", "datePublished": "2023-11-20T08:00:00+08:00",'
        ' "author": {"@type": "Person", "name": "林舟"}}</script>'
    )
    p = extract(page("黑五备货观察 - 出海日报", PARAS, head=head), url="https://mirror.example.org/x")
    assert p.url == "https://news.example.com/a/1.html"
    assert p.title == "黑五备货观察"
    assert p.published.isoformat() == "2023-11-20T08:00:00+08:00"
    assert p.tags[:2] == ["黑色星期五", "广告"]
    assert p.source == "出海日报"


def test_chinese_date_in_text_and_title_suffix_removed():
    body = "<p>发布时间：2020年6月1日</p>" + PARAS
    p = extract(page("平台政策更新_卖家之声", body, h1=""))
    assert p.published.isoformat() == "2020-06-01"
    assert p.title == "平台政策更新"


def test_site_rule_selects_content_and_drops_selectors(tmp_path):
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        '[[site]]\nname = "help"\nmatch = ["help.example.com"]\ncontent = "#content"\ndrop = [".hidden", "[hidden]"]\n',
        encoding="utf-8",
    )
    html = (
        "<html><head><title>帮助</title></head><body><div id=nav>导航 目录</div><div id=content>"
        "<h1>插入表格</h1><p>选择「插入 - 表格」。<span hidden>macOS 菜单</span></p>"
        "<pre>line 1\n  line 2</pre><div class=hidden>调试信息</div><p>表格\n可以嵌套。</p></div></body></html>"
    )
    p = extract(html, url="https://help.example.com/t.html", rules=load_rules(rules_file))
    assert p.extractor == "rule:help"
    assert p.body == "插入表格\n\n选择「插入 - 表格」。\n\nline 1\n  line 2\n\n表格可以嵌套。"


def test_pages_without_an_article_are_skipped_with_a_reason(make_index, tmp_path):
    (tmp_path / "crawl").mkdir()
    (tmp_path / "crawl" / "empty.html").write_text("   ", encoding="utf-8")
    (tmp_path / "crawl" / "ok.html").write_text(page("正常文章", PARAS), encoding="utf-8")
    ix = make_index()
    summary = index_paths(ix.settings, [str(tmp_path / "crawl")])
    assert summary.added == 1 and summary.pages == 2
    assert [(Path(s.location).name, s.reason) for s in summary.skipped] == [("empty.html", "empty page")]
    assert ix.engine.document("ok.html") is not None  # id: path relative to the folder given


def test_jsonl_records_with_html_and_duplicates_merged(make_index):
    ix = make_index()
    first = {"url": "https://a.example.com/news/1", "html": page("黑五备货观察", PARAS)}
    syndicated = {"url": "https://b.example.net/copy/9", "html": page("黑五备货观察", PARAS + "<p>（转载）</p>")}
    other = {
        "url": "https://a.example.com/news/2",
        "html": page("另一篇文章", PARAS.replace("黑色星期五", "网络星期一")),
    }
    summary = ix.add([first, syndicated, other])
    assert summary.added == 2
    assert [(d.id, d.duplicate_of) for d in summary.duplicates] == [
        ("https://b.example.net/copy/9", "https://a.example.com/news/1")
    ]
    assert sorted(ix.ids("备货")) == ["https://a.example.com/news/1", "https://a.example.com/news/2"]
    # A later crawl is checked against what the index already holds.
    again = ix.add([{**syndicated, "url": "https://c.example.org/3"}])
    assert again.added == 0 and again.duplicates[0].duplicate_of == "https://a.example.com/news/1"


def test_prune_removes_what_a_complete_crawl_no_longer_has(make_index):
    ix = make_index([{"id": f"d{i}", "title": f"文章{i} 物流"} for i in range(4)])
    crawl = [{"id": "d0", "title": "文章0 物流"}, {"id": "d2", "title": "文章2 物流"}]
    # A line that cannot be read may hold any id: nothing is pruned.
    broken = write_jsonl(ix.root / "broken.jsonl", [*crawl, '{"id": "d3", "bad'])
    with pytest.raises(RunRefused, match=r"(?s)could not be read completely.*broken.jsonl:3"):
        index_paths(ix.settings, [str(broken)], prune=True)
    assert sorted(ix.ids("物流")) == ["d0", "d1", "d2", "d3"]
    summary = index_paths(ix.settings, [str(write_jsonl(ix.root / "full.jsonl", crawl))], prune=True)
    assert summary.pruned == 2 and summary.documents == 2
    assert sorted(ix.ids("物流")) == ["d0", "d2"]


def test_rebuild_switches_generations_and_cleans_up(make_index):
    ix = make_index([{"id": "old", "title": "旧文章 物流"}])
    store = IndexStore(ix.settings.index)
    first = store.current_name()
    crawl = write_jsonl(ix.root / "crawl.jsonl", [{"id": "new", "title": "新文章 物流"}])
    # The new crawl has none of the live documents: that takes --force.
    summary = index_paths(ix.settings, [str(crawl)], rebuild=True, force=True)
    assert summary.rebuilt and summary.rebuilt != first
    # The replaced generation stays for searchers that have it open, until
    # the next rebuild.
    assert store.current_name() == summary.rebuilt and store.generations() == [first, summary.rebuilt]
    assert ix.ids("物流") == ["new"]
    again = index_paths(ix.settings, [str(crawl)], rebuild=True)
    assert store.generations() == [summary.rebuilt, again.rebuilt]


def test_rebuild_killed_halfway_leaves_the_live_index_serving(make_index, tmp_path):
    ix = make_index([{"id": "live", "title": "在线文章 物流", "body": "上线中的索引。"}])
    store = IndexStore(ix.settings.index)
    live = store.current_name()
    big = write_jsonl(
        tmp_path / "big.jsonl",
        ({"id": f"b{i}", "title": f"重建文章{i}", "body": "跨境电商物流新闻。" * 40} for i in range(20000)),
    )
    env = {**os.environ, "ZHSEARCH_INDEX": str(ix.settings.index)}
    proc = subprocess.Popen([*search_command(), "index", "--rebuild", str(big)], env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(store.generations()) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)  # well into writing the new generation
    assert proc.poll() is None, "the rebuild finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.current_name() == live
    assert ix.ids("物流") == ["live"]
    # The next rebuild cleans up what the killed one left.
    small = write_jsonl(tmp_path / "small.jsonl", [{"id": "n", "title": "重建后 物流"}])
    summary = index_paths(ix.settings, [str(small)], rebuild=True, force=True)
    assert store.generations() == [live, summary.rebuilt]
    assert ix.ids("物流") == ["n"]


def test_cli_report_file(tmp_path):
    from click.testing import CliRunner

    from cli import cli

    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["--index", str(tmp_path / "ix"), "index", str(PORTAL), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "pages: 1 read (1 utf-8), 1 extracted, 0 skipped, 0 duplicates merged" in result.output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["pages"] == 1 and data["encodings"] == {"utf-8": 1} and data["added"] == 1
