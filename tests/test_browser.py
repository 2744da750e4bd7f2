"""The search page in a real browser (Debian's chromium driven by
Playwright) against a real `search serve` (gunicorn) on a free local port."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import ON_SHARED_SERVERS, running_server

pytestmark = ON_SHARED_SERVERS

CHROMIUM = os.environ.get("ZHSEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def server(sample_server) -> str:
    return sample_server


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no chromium at {CHROMIUM}: .ci/run installs Debian's chromium; install it to run this test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert not errors, errors


def test_type_query_see_marks_page_filter_and_open_article(server, page, tmp_path):
    page.goto(server + "/")
    box = page.get_by_label("搜索文章")
    box.fill("跨境电商")
    box.press("Enter")
    page.wait_for_selector("li.hit")
    assert page.input_value("#q") == "跨境电商"
    marks = page.locator("li.hit mark")
    assert marks.count() > 3
    assert {marks.nth(i).inner_text() for i in range(marks.count())} & {"跨境电商", "跨境電商"}
    first_page_titles = page.locator("li.hit h2").all_inner_texts()
    # Under each title: the site (a link that filters by it) and the trail to the page.
    where = page.locator("li.hit h2 + p.where")
    assert where.count() == page.locator("li.hit").count()
    assert where.first.locator("a.site").inner_text() == "news.example.com"
    assert all(re.fullmatch(r"news\.example\.com › articles › sample-\d{3}", t) for t in where.all_inner_texts())
    page.screenshot(path=str(tmp_path / "results.png"))

    # Page 2.
    page.get_by_role("navigation", name="分页").get_by_role("link", name="2", exact=True).click()
    page.wait_for_url("**page=2**")
    assert page.locator('.pager [aria-current="page"]').inner_text() == "2"
    assert not set(page.locator("li.hit h2").all_inner_texts()) & set(first_page_titles)

    # A tag facet narrows the results and shows as a removable filter.
    facet = page.locator("aside.facets section", has_text="标签").locator("ul.facet-list a").first
    tag = facet.inner_text()
    facet.click()
    page.wait_for_selector("ul.chips.active")
    assert f"标签：{tag}" in page.locator("ul.chips.active").inner_text()
    total_text = page.locator("#summary strong").first.inner_text()
    hits = page.locator("li.hit")
    for i in range(hits.count()):
        assert tag in hits.nth(i).locator("ul.chips").inner_text()
    page.locator("ul.chips.active a").first.click()
    page.wait_for_load_state()
    assert page.locator("ul.chips.active").count() == 0
    assert int(page.locator("#summary strong").first.inner_text()) > int(total_text)

    # Open an article.
    page.locator("li.hit a.more").first.click()
    page.wait_for_selector("article.doc h1")
    assert page.locator("article.doc .body p").count() >= 1
    assert page.locator("section.related li").count() >= 1


@pytest.fixture(scope="module")
def crawl_server(crawl_index):
    """`search serve` over the shared crawl of three documentation sites."""
    with running_server(crawl_index) as (base, _proc):
        yield base


def test_same_titles_told_apart_by_site_and_breadcrumb(crawl_server, page, tmp_path):
    """Help pages called 表格 (and 工具栏) show where each one lives."""
    page.goto(crawl_server + "/?q=%E8%A1%A8%E6%A0%BC")
    page.wait_for_selector("li.hit")
    page.screenshot(path=str(tmp_path / "表格.png"), full_page=True)
    hits = page.locator("li.hit")
    trails = []
    for i in range(hits.count()):
        hit = hits.nth(i)
        site = hit.locator("p.where a.site").inner_text()
        trail = hit.locator("p.where").inner_text()
        assert site == "libreoffice-help-zh-cn" and trail.startswith(site + " › "), trail
        if hit.locator("h2").inner_text() == "表格":
            trails.append(trail)
    assert len(trails) >= 2 and len(set(trails)) == len(trails), trails
    # The site facet narrows to one site; each result names its source.
    assert "libreoffice-help-zh-cn" in page.locator("aside.facets section", has_text="站点").inner_text()
    assert set(page.locator("li.hit p.meta span").first.all_inner_texts()) == {"LibreOffice 帮助"}


def test_suggestions_while_typing(server, page):
    page.goto(server + "/")
    page.locator("#q").press_sequentially("跨境电", delay=30)
    page.wait_for_selector("#suggestions option", state="attached", timeout=5000)
    options = page.eval_on_selector_all("#suggestions option", "els => els.map(e => e.value)")
    assert "跨境电商" in options


def test_keyboard_only_search(server, page):
    page.goto(server + "/?q=%E7%89%A9%E6%B5%81")
    page.locator("body").click(position={"x": 5, "y": 600})
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.press("Control+a")
    page.keyboard.type("亚马逊")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=%E4%BA%9A%E9%A9%AC%E9%80%8A**")
    assert page.locator("li.hit").count() > 0


def test_phone_width_has_no_horizontal_scroll(server, browser):
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN")
    pg = context.new_page()
    pg.goto(server + "/?q=TikTok%20Shop%20%E5%8D%96%E5%AE%B6")
    pg.wait_for_selector("li.hit")
    assert pg.evaluate("document.documentElement.scrollWidth") <= 360
    context.close()


def test_page_works_without_javascript(server, browser):
    context = browser.new_context(java_script_enabled=False)
    pg = context.new_page()
    pg.goto(server + "/")
    pg.fill("#q", "物流")
    pg.click("button[type=submit]")
    pg.wait_for_selector("li.hit")
    assert pg.locator("li.hit mark").count() > 0
    context.close()


def _status(url: str, data: bytes | None = None, method: str = "GET") -> int:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def test_real_server_caps_request_sizes(server):
    assert _status(server + "/api/search?q=" + "%E7%94%B5" * 4000) in (400, 414)  # request line > 8 KB
    assert _status(server + "/api/search?q=x", data=b"x" * 200_000, method="POST") in (405, 413)
    assert _status(server + "/api/health") == 200


def test_dev_server_never_shows_the_debugger(tmp_path, sample_command_index):
    index = tmp_path / "index"
    shutil.copytree(sample_command_index, index)  # this test damages it
    generation = next(p for p in index.iterdir() if p.name.startswith("gen-"))
    with running_server(index, dev=True) as (base, _proc):
        for segment in generation.glob("*.seg"):
            segment.write_bytes(b"\x00" * 64)
        (generation / "_MAIN_9.toc").write_bytes(b"garbage")
        req = urllib.request.Request(base + "/?q=%E7%89%A9%E6%B5%81")
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("a damaged index answered 200")
        except urllib.error.HTTPError as err:
            body = err.read().decode("utf-8", "replace")
            assert err.code == 503 and "search check" in body
            assert "Werkzeug" not in body and "Traceback" not in body and "console" not in body.lower()


def _api_total(server: str, q: str, **args: str) -> int:
    query = urllib.parse.urlencode({"q": q, **args})
    with urllib.request.urlopen(f"{server}/api/search?{query}", timeout=10) as r:
        return json.load(r)["total"]


def _shown_total(page) -> int:
    return int(page.locator("#summary strong").first.inner_text())


def test_results_update_while_typing(server, page):
    """Results, count and facets follow the box without Enter; the address
    follows (replaceState, no navigation); a stale answer never lands."""
    page.goto(server + "/")
    assert page.evaluate("document.activeElement.id") == "q"  # autofocus on the home page
    page.evaluate("window.stayed = true")  # gone if the page navigated
    entries = page.evaluate("history.length")
    page.keyboard.type("物流", delay=40)
    page.wait_for_function("() => new URLSearchParams(location.search).get('q') === '物流'")
    page.wait_for_selector("li.hit")
    assert _shown_total(page) == _api_total(server, "物流")
    assert page.locator("aside.facets section", has_text="标签").count() == 1
    assert page.evaluate("window.stayed") is True and page.evaluate("history.length") == entries

    page.keyboard.type(" 亚马逊", delay=40)
    page.wait_for_function("() => new URLSearchParams(location.search).get('q') === '物流 亚马逊'")
    expected = _api_total(server, "物流 亚马逊")
    assert expected < _api_total(server, "物流") and _shown_total(page) == expected
    assert "亚马逊" in page.locator("li.hit mark").all_inner_texts()
    assert page.evaluate("window.stayed") is True and page.input_value("#q") == "物流 亚马逊"

    # A request held back by the network, answered after a newer one: never shown.
    held = []
    stale = re.compile(r"[?&]q=%E5%B9%BF&")  # q=广
    page.route(lambda url: bool(stale.search(url)), lambda route: held.append(route))
    page.keyboard.press("Control+a")
    with page.expect_request(lambda r: bool(stale.search(r.url))):
        page.keyboard.type("广")
    page.keyboard.type("告")
    page.wait_for_function("() => new URLSearchParams(location.search).get('q') === '广告'")
    assert held, "the first request never reached the network"
    with contextlib.suppress(Exception):  # cancelled already, as it should be
        held[0].fulfill(status=200, content_type="text/html", body='<main id="main"><p id="stale">旧</p></main>')
    page.wait_for_timeout(300)
    assert page.locator("#stale").count() == 0 and _shown_total(page) == _api_total(server, "广告")
    assert page.evaluate("window.stayed") is True


def test_article_page_from_a_search(server, page):
    page.goto(server + "/?q=%E8%B7%A8%E5%A2%83%E7%94%B5%E5%95%86&tag=%E7%89%A9%E6%B5%81")
    results_url = page.url
    page.locator("li.hit a.more").first.click()
    page.wait_for_selector("article.doc h1")
    assert re.search(r"/doc/sample-\d{3}\?q=%E8%B7%A8%E5%A2%83%E7%94%B5%E5%95%86&tag=", page.url)
    assert page.input_value("#q") == "跨境电商"
    marks = page.locator("article.doc .body mark")
    assert marks.count() >= 1 and set(marks.all_inner_texts()) <= {"跨境电商", "跨境電商"}
    page.get_by_role("link", name="跳到第一处匹配").click()
    page.wait_for_function("() => location.hash === '#first-match'")
    assert page.evaluate("document.querySelector('mark:target') === document.querySelector('.body mark')")
    page.get_by_role("link", name="返回搜索结果").click()
    page.wait_for_selector("li.hit")
    assert page.url == results_url and "标签：物流" in page.locator("ul.chips.active").inner_text()


def test_phone_layout_filters_behind_a_button_and_chips_above_results(server, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    pg = context.new_page()
    pg.goto(server + "/?q=%E5%8D%96%E5%AE%B6&tag=%E7%89%A9%E6%B5%81")
    first_hit = pg.locator("li.hit").first.bounding_box()
    toggle = pg.get_by_role("button", name="筛选")
    chips = pg.locator("ul.chips.active")
    assert toggle.is_visible() and chips.is_visible() and "标签：物流" in chips.inner_text()
    assert toggle.bounding_box()["y"] + toggle.bounding_box()["height"] <= first_hit["y"]
    assert chips.bounding_box()["y"] + chips.bounding_box()["height"] <= first_hit["y"]
    assert first_hit["y"] < 844  # the first result is on the first screen
    filters = pg.locator("#filters")
    assert not filters.is_visible() and toggle.get_attribute("aria-expanded") == "false"
    toggle.click()
    assert filters.is_visible() and toggle.get_attribute("aria-expanded") == "true"
    assert filters.bounding_box()["y"] < pg.locator("li.hit").first.bounding_box()["y"]
    assert pg.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def _contrast(a: str, b: str) -> float:
    def luminance(css: str) -> float:
        r, g, b = (int(x) / 255 for x in re.findall(r"\d+", css)[:3])
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_keyboard_and_accessibility(server, page):
    page.goto(server + "/?q=%E7%89%A9%E6%B5%81")
    assert page.locator("h1").count() >= 1
    assert page.evaluate("document.activeElement.id") != "q"  # no autofocus away from the home page
    assert not page.locator(".filters-toggle").is_visible() and page.locator("#filters").is_visible()
    # Tab order: the box, sort, button, the skip link to the filters, then the results.
    page.locator("#q").focus()
    seen = []
    for _ in range(12):
        page.keyboard.press("Tab")
        seen.append(
            page.evaluate(
                "(() => { const e = document.activeElement;"
                " return e.closest('#filters') ? 'filter' : e.closest('li.hit h2') ? 'hit'"
                " : e.classList.contains('skip-filters') ? 'skip' : e.tagName; })()"
            )
        )
        if seen[-1] == "hit":
            break
    assert seen[-1] == "hit" and "filter" not in seen and "skip" in seen, seen
    # The focus ring: 3:1 or more against the page behind it.
    ring = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth), s.outlineColor]; })()"
    )
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    if background == "rgba(0, 0, 0, 0)":
        background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert ring[0] != "none" and ring[1] >= 2 and _contrast(ring[2], background) >= 3, (ring, background)
    # The skip link leads to the filters.
    page.locator("a.skip-filters").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement.closest('#filters') !== null")
    # j/k and the arrows move through the results.
    titles = page.locator("li.hit h2 a")
    page.locator("#summary").click()
    page.keyboard.press("j")
    assert titles.nth(0).evaluate("e => e === document.activeElement")
    page.keyboard.press("j")
    assert titles.nth(1).evaluate("e => e === document.activeElement")
    page.keyboard.press("k")
    assert titles.nth(0).evaluate("e => e === document.activeElement")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert titles.nth(2).evaluate("e => e === document.activeElement")
    # A sort change applies at once.
    page.select_option("#sort", "date")
    page.wait_for_function("() => new URLSearchParams(location.search).get('sort') === 'date'")
    page.wait_for_function("() => document.querySelector('#summary strong:last-of-type').textContent === '最新'")
    dates = page.locator("li.hit time").evaluate_all("ts => ts.map(t => t.getAttribute('datetime'))")
    assert len(dates) > 2 and dates == sorted(dates, reverse=True)
    # Every page has a heading of its own.
    page.goto(server + "/doc/sample-001")
    assert page.locator("h1").count() == 1


def test_a_typo_is_answered_with_its_correction(server, page):
    """yamaxun showed 0 results and a link; now the corrected results, and
    a way to search as typed."""
    page.goto(server + "/")
    assert page.evaluate("document.activeElement.id") == "q"  # no first letter lost
    page.keyboard.type("yamaxun", delay=30)
    notice = page.locator("p.notice", has_text="已显示")
    notice.wait_for(timeout=10_000)
    assert "已显示“亚马逊”的搜索结果。仍然搜索：yamaxun" in notice.inner_text()
    assert page.locator("li.hit").count() > 0
    page.locator("p.notice a", has_text="yamaxun").click()
    page.wait_for_selector("p.notice >> text=你是不是要找")
    assert page.locator("li.hit").count() == 0
    assert "autocorrect=0" in page.url
