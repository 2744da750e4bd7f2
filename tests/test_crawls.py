"""Real crawler output in, nothing lost: web archives written by wget and
by warcio, the real WARCs of other projects, Scrapy's feeds, CSV and Excel
exports, crawlers' own field names, and the runs that refuse to delete
what they could not read."""

from __future__ import annotations

import datetime as dt
import gzip
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from indexer.config import Settings
from indexer.sources import find_files
from indexer.writer import export_documents, index_paths

from conftest import IndexHarness, search_command, shared_corpus, write_jsonl

PARAGRAPHS = [
    "跨境电商卖家正在为今年的旺季备货，海外仓的库容再次成为讨论的焦点。",
    "多位物流服务商表示，美国西部港口的拥堵情况有所缓解，但尾程派送的成本仍在上涨。",
    "业内人士建议卖家提前规划头程运输，分批发货，并关注平台对库存周转率的新要求。",
]


def article(title: str, *extra: str, charset_meta: str | None = "utf-8") -> str:
    meta = f'<meta charset="{charset_meta}">' if charset_meta else ""
    body = "".join(f"<p>{p}</p>" for p in (*extra, *PARAGRAPHS))
    return (
        f"<!DOCTYPE html><html><head>{meta}<title>{title}</title></head>"
        f"<body><nav>首页 | 物流频道</nav><article><h1>{title}</h1>{body}</article>"
        f"<footer>版权所有</footer></body></html>"
    )


# ------------------------------------------------------------ a test site


class Site:
    """A small news site on 127.0.0.1 whose pages can change between crawls."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, dict[str, str], bytes]] = {}
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status, headers, body = site.pages.get(self.path, (404, {"Content-Type": "text/html"}, b"not found"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if headers.get("Transfer-Encoding") == "chunked":
                    self.end_headers()
                    for i in range(0, len(body), 97):
                        piece = body[i : i + 97]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def html(self, path: str, text: str, charset: str = "utf-8", **headers: str) -> None:
        self.pages[path] = (200, {"Content-Type": f"text/html; charset={charset}", **headers}, text.encode(charset))

    def crawl(self, warc: Path, *, cdx: bool = False, dedup: Path | None = None) -> Path:
        """Crawl every page (and a missing one) with wget into ``warc``."""
        wget = shutil.which("wget")
        if wget is None:
            pytest.skip("Debian's wget is not installed (.ci/run installs it)")
        warc.parent.mkdir(parents=True, exist_ok=True)
        urls = [self.base + path for path in sorted(self.pages)] + [self.base + "/missing.html"]
        args = [wget, "--no-verbose", "-e", "robots=off", f"--warc-file={warc}", "-P", str(warc.parent / "files")]
        if cdx:
            args.append("--warc-cdx")
        if dedup:
            args.append(f"--warc-dedup={dedup}")
        proc = subprocess.run([*args, *urls], capture_output=True, text=True, timeout=120)
        # wget exits 8 for the 404; the archive is what matters.
        assert proc.returncode in (0, 8), proc.stderr
        return warc.with_name(warc.name + ".warc.gz")


@pytest.fixture
def site():
    s = Site()
    yield s
    s.server.shutdown()


def _urls(settings) -> dict[str, dict]:
    return {d["id"]: d for d in export_documents(settings)}


def test_a_wget_crawl_and_its_deduplicated_recrawl(site, tmp_path):
    gbk_title = "海外仓库容告急 卖家提前备货"
    site.html("/gbk.html", article(gbk_title, charset_meta=None), charset="gbk")
    site.html("/chunked.html", article("头程运输价格回落", "分批发货成为新常态。"), **{"Transfer-Encoding": "chunked"})
    gz = gzip.compress(article("尾程派送成本上涨", "美国西部港口拥堵缓解。").encode())
    site.pages["/gzip.html"] = (200, {"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"}, gz)
    site.html("/changing.html", article("平台库存新规解读", "第一版。"))
    site.html("/going.html", article("即将下线的旧闻", "这篇稿件会被删除。"))
    site.pages["/logo.png"] = (200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n" + bytes(64))

    first = site.crawl(tmp_path / "one" / "crawl1", cdx=True)
    ix = IndexHarness(tmp_path / "ix")
    summary = index_paths(ix.settings, [str(first)])
    docs = _urls(ix.settings)
    expected = {site.base + p for p in ("/gbk.html", "/chunked.html", "/gzip.html", "/changing.html", "/going.html")}
    assert set(docs) == expected, summary.to_dict()
    # The charset only the HTTP header gave; the de-chunked and decompressed bodies.
    assert docs[site.base + "/gbk.html"]["title"] == gbk_title
    assert "海外仓的库容" in docs[site.base + "/gbk.html"]["body"]
    assert "分批发货成为新常态" in docs[site.base + "/chunked.html"]["body"]
    assert "西部港口拥堵缓解" in docs[site.base + "/gzip.html"]["body"]
    assert summary.encodings["gb18030"] == 1
    assert summary.records_skipped["HTTP status 404"] == 1
    assert summary.records_skipped["not HTML (image/png)"] == 1
    assert summary.records_skipped["WARC request record"] >= 7
    assert all(d["crawled"] and d["crawled"][:4].isdigit() for d in docs.values())

    # The second crawl stores unchanged pages as revisits only.
    site.html("/changing.html", article("平台库存新规解读", "第二版：新增了罚则。"))
    del site.pages["/going.html"]
    second = site.crawl(tmp_path / "two" / "crawl2", dedup=first.with_name("crawl1.cdx"))
    summary = index_paths(ix.settings, [str(second)], prune=True)
    assert summary.revisits >= 4, summary.to_dict()
    assert (summary.updated, summary.pruned, summary.added) == (1, 1, 0)
    docs = _urls(ix.settings)
    assert set(docs) == expected - {site.base + "/going.html"}
    assert "第二版" in docs[site.base + "/changing.html"]["body"]
    assert ix.ids("海外仓库容告急") == [site.base + "/gbk.html"]


def test_a_revisit_keeps_a_page_whose_canonical_url_differs(tmp_path):
    from warcio.warcwriter import WARCWriter

    page = article("独立站引流指南").replace("<head>", '<head><link rel="canonical" href="https://news.example/a">')
    one, two = tmp_path / "one.warc.gz", tmp_path / "two.warc.gz"
    with open(one, "wb") as fh:
        _response(WARCWriter(fh, gzip=True), "https://news.example/a?from=rss", page.encode())
        _response(WARCWriter(fh, gzip=True), "https://news.example/b", article("直播带货的退货率").encode())
    with open(two, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        revisit = writer.create_revisit_record(
            "https://news.example/a?from=rss", "sha1:AAAA", "https://news.example/a?from=rss", "2024-01-01T00:00:00Z"
        )
        writer.write_record(revisit)
        _response(writer, "https://news.example/b", article("直播带货的退货率").encode())
    ix = IndexHarness(tmp_path / "ix")
    index_paths(ix.settings, [str(one)])
    assert sorted(_urls(ix.settings)) == ["https://news.example/a", "https://news.example/b"]
    summary = index_paths(ix.settings, [str(two)], prune=True)
    assert summary.pruned == 0 and summary.revisits == 1
    assert _urls(ix.settings)["https://news.example/a"]["crawl_url"] == "https://news.example/a?from=rss"


def _response(writer, url: str, body: bytes, status: str = "200 OK", content_type: str = "text/html; charset=utf-8"):
    from warcio.statusandheaders import StatusAndHeaders

    headers = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
    writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))


def test_a_warc_written_with_warcio(tmp_path):
    from warcio.warcwriter import WARCWriter

    path = tmp_path / "crawl.warc"
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=False)
        writer.write_record(writer.create_warcinfo_record("crawl.warc", {"software": "test"}))
        _response(writer, "https://news.example/tiktok-shop", article("TikTok Shop 美区开放入驻").encode())
        _response(writer, "https://news.example/gone", b"<html>gone</html>", status="404 Not Found")
        _response(writer, "https://news.example/feed.json", b"{}", content_type="application/json")
        req = writer.create_warc_record("https://news.example/tiktok-shop", "request", payload=io.BytesIO(b"GET /"))
        writer.write_record(req)
    ix = IndexHarness(tmp_path / "ix")
    summary = index_paths(ix.settings, [str(path)])
    assert summary.added == 1 and not summary.rejected
    assert ix.ids("TikTok Shop 入驻") == ["https://news.example/tiktok-shop"]
    assert dict(summary.records_skipped) == {
        "WARC warcinfo record": 1,
        "HTTP status 404": 1,
        "not HTML (application/json)": 1,
        "WARC request record": 1,
    }


SHARED_WARCS = {
    "commoncrawl-2014-sample.warc": {"http://0pointer.de/photos/?gallery=Australia&photo=496"},
    "pywb-iana.warc.gz": {"http://www.iana.org/numbers", "http://www.iana.org/about", "https://www.iana.org/dnssec"},
    "pywb-dupes.warc.gz": {"http://example.com"},
    "pywb-example-wget-1-14.warc.gz": {"http://example.com/"},
    "pywb-example-wpull.warc.gz": {"http://example.com/"},
    "pywb-example2.warc.gz": {"http://example.com/"},
}


def _members(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, content) of each gzip member of a per-record gzipped WARC."""
    import zlib

    members, pos = [], 0
    while pos < len(data):
        member = zlib.decompressobj(31)
        members.append((pos, member.decompress(data[pos:])))
        pos = len(data) - len(member.unused_data)
    return members


def test_a_damaged_record_of_a_crawl_loses_only_itself(site, tmp_path):
    """One bad byte in a crawl's web archive (a gzip member that does not
    decompress, a header warcio cannot parse), or an archive cut short:
    the record is reported with its offset and skipped, and every other
    page is indexed. warcio stops at such a record (or fails on it), which
    lost every page after it."""
    for n in range(8):
        site.html(f"/news{n}.html", article(f"跨境物流快讯第{n}期", f"第{n}期正文。"))
    warc = site.crawl(tmp_path / "crawl" / "crawl")
    data = warc.read_bytes()
    members = _members(data)
    responses = [(at, body) for at, body in members if b"WARC-Type: response" in body[:400]]
    pages = {site.base + f"/news{n}.html" for n in range(8)}

    def damaged_uri(body: bytes) -> str:
        return body.split(b"WARC-Target-URI: ", 1)[1].split(b"\r\n", 1)[0].decode().strip("<>")

    # A byte flipped inside the third page's member.
    at, body = responses[2]
    end = next(o for o, _ in members if o > at)
    flipped = bytearray(data)
    flipped[(at + end) // 2] ^= 0xFF
    crawl = tmp_path / "flipped.warc.gz"
    crawl.write_bytes(bytes(flipped))
    ix = IndexHarness(tmp_path / "ix1")
    summary = index_paths(ix.settings, [str(crawl)])
    assert set(_urls(ix.settings)) == pages - {damaged_uri(body)}, summary.to_dict()
    (bad,) = summary.unreadable
    assert bad.location == f"{crawl}@{at}" and "reading goes on at offset" in bad.reason

    # The same crawl uncompressed, one response without its target URI
    # (warcio failed on it with an AttributeError, and the run with it).
    plain = b"".join(body for _, body in members)
    at = plain.index(responses[4][1])
    plain = (
        plain[:at]
        + responses[4][1].replace(b"WARC-Target-URI:", b"WARC-Target-URX:", 1)
        + plain[at + len(responses[4][1]) :]
    )
    crawl = tmp_path / "plain.warc"
    crawl.write_bytes(plain)
    ix = IndexHarness(tmp_path / "ix2")
    summary = index_paths(ix.settings, [str(crawl)])
    assert set(_urls(ix.settings)) == pages - {damaged_uri(responses[4][1])}, summary.to_dict()
    (bad,) = summary.unreadable
    assert bad.location == f"{crawl}@{at}" and "reading goes on at offset" in bad.reason

    # Cut inside the last page's member (a copy taken while it was written).
    at, body = responses[-1]
    crawl = tmp_path / "cut.warc.gz"
    crawl.write_bytes(data[: at + 200])
    ix = IndexHarness(tmp_path / "ix3")
    summary = index_paths(ix.settings, [str(crawl)])
    assert set(_urls(ix.settings)) == pages - {damaged_uri(body)}, summary.to_dict()
    (bad,) = summary.unreadable
    assert bad.location == f"{crawl}@{at}" and "nothing readable after it" in bad.reason


@pytest.mark.parametrize("name", sorted(SHARED_WARCS))
def test_real_warcs_of_other_crawlers(tmp_path, name):
    path = shared_corpus(f"warc/{name}")
    ix = IndexHarness(tmp_path / "ix")
    summary = index_paths(ix.settings, [str(path)])
    assert not summary.unreadable, summary.unreadable
    ids = set(_urls(ix.settings))
    assert SHARED_WARCS[name] <= ids, ids
    # Only pages: no script, style sheet, font or image became a document.
    assert not {i for i in ids if i.rsplit(".", 1)[-1] in ("js", "css", "ttf", "otf", "png", "svg", "ico")}


def test_a_whole_file_gzip_warc_is_reported_never_a_crash_or_a_prune(tmp_path):
    bad = shared_corpus("warc/pywb-example-bad.warc.gz.bad")
    runner = CliRunner()
    index = tmp_path / "ix"
    crawl = write_jsonl(tmp_path / "live.jsonl", [{"id": f"d{i}", "title": f"文章{i}"} for i in range(4)])
    assert runner.invoke(cli, ["--index", str(index), "index", str(crawl)]).exit_code == 0
    before = _snapshot(index)
    for extra in ([], ["--prune"], ["--rebuild"]):
        result = runner.invoke(cli, ["--index", str(index), "index", *extra, str(bad), str(crawl)])
        assert result.exit_code == 1, result.output
        assert "non-chunked gzip" in result.output and "Traceback" not in result.output
        assert _snapshot(index) == before


# ------------------------------------------------------- Scrapy, CSV, Excel

SCRAPY_ITEMS = [
    {
        "link": "https://news.example/1",
        "title": "亚马逊 Prime Day 备战指南",
        "content": ["亚马逊会员日即将到来，", "卖家需要提前准备库存。"],
        "pub_time": "2024-07-02 10:30",
        "keywords": "亚马逊、Prime Day，备货",
        "site_name": "出海日报",
    },
    {"link": "https://news.example/2", "text": "TikTok Shop 东南亚站点佣金调整。", "pubdate": "2024年7月3日 9:05"},
    {
        "href": "https://news.example/3",
        "标题": "独立站支付方式",
        "正文": "独立站卖家常用的支付方式有哪些。",
        "发布时间": 1720000000,
    },
]


def test_scrapy_json_array_with_its_own_field_names(tmp_path):
    path = tmp_path / "items.json"
    path.write_text(json.dumps(SCRAPY_ITEMS, ensure_ascii=False, indent=2), encoding="utf-8")
    ix = IndexHarness(tmp_path / "ix")
    summary = index_paths(ix.settings, [str(path)])
    assert (summary.added, summary.rejected) == (3, [])
    docs = _urls(ix.settings)
    one = docs["https://news.example/1"]
    assert one["body"] == "亚马逊会员日即将到来，\n卖家需要提前准备库存。"
    assert one["tags"] == ["亚马逊", "Prime Day", "备货"] and one["source"] == "出海日报"
    assert one["published"] == "2024-07-02T10:30:00"
    assert docs["https://news.example/2"]["published"] == "2024-07-03T09:05:00"
    assert docs["https://news.example/3"]["published"].startswith("2024-07-03T17:46:40+08:00")
    assert ix.ids("佣金调整") == ["https://news.example/2"]
    assert ix.ids("备货", since=dt.date(2024, 7, 1)) == ["https://news.example/1"]


def test_a_broken_json_array_is_reported_with_its_line(tmp_path):
    path = tmp_path / "items.json"
    text = json.dumps(SCRAPY_ITEMS[:2], ensure_ascii=False, indent=2)
    path.write_text(text[: text.rindex("}")], encoding="utf-8")  # cut inside the last item
    summary = index_paths(IndexHarness(tmp_path / "ix").settings, [str(path)])
    assert summary.added == 1
    (bad,) = summary.unreadable
    line = int(bad.location.rsplit(":", 1)[1])
    assert text.splitlines()[line - 1].strip() == "{" and "unread" in bad.reason


def test_a_bad_item_of_a_json_array_loses_only_itself(tmp_path):
    """An item that does not parse, or holds bytes that are not UTF-8, is
    reported with its line and skipped; the items after it are indexed (a
    JSON array has no line to resume at, so the next one is found)."""
    items = [
        {"link": f"https://news.example/{i}", "title": f"第{i}篇", "text": f"跨境电商新闻正文{i}。"} for i in range(8)
    ]
    text = json.dumps(items, ensure_ascii=False, indent=2).encode("utf-8")
    broken = text.replace('"第2篇"'.encode(), '"第2篇'.encode())  # an unclosed string
    broken = broken.replace("正文5".encode(), b"\xff\xfe5")  # not UTF-8
    path = tmp_path / "items.json"
    path.write_bytes(broken)
    summary = index_paths(IndexHarness(tmp_path / "ix").settings, [str(path)])
    assert set(_urls(IndexHarness(tmp_path / "ix").settings)) == {
        f"https://news.example/{i}" for i in range(8) if i not in (2, 5)
    }, summary.to_dict()
    lines = broken.splitlines()
    reasons = {int(b.location.rsplit(":", 1)[1]): b.reason for b in summary.unreadable}
    assert [lines[n - 1].strip() for n in reasons] == [b"{", b"{"], reasons
    assert list(reasons.values())[0].endswith("skipped to the next item")
    assert list(reasons.values())[1] == "not valid UTF-8"
    # Single-line arrays (json.dumps' default) resume after "},".
    path.write_bytes(json.dumps(items, ensure_ascii=False).replace('"第2篇"', '"第2篇').encode("utf-8"))
    summary = index_paths(IndexHarness(tmp_path / "ix2").settings, [str(path)])
    assert summary.added == 7 and len(summary.unreadable) == 1, summary.to_dict()


def test_a_large_json_array_streams_across_windows(tmp_path):
    from indexer.sources import read_json_array

    items = [{"id": f"d{i}", "title": f"第{i}篇", "n": 10**12 + i} for i in range(3000)]
    blob = json.dumps(items, ensure_ascii=False, indent=1).encode()
    got = list(read_json_array(io.BytesIO(blob), "x.json", chunk=64))
    assert [r.data for r in got] == items
    assert got[1].location == "x.json:" + str(blob[: blob.index(b'"d1"')].count(b"\n"))


def test_jl_in_a_folder_compressed_feeds_and_standard_input(tmp_path):
    folder = tmp_path / "crawl"
    (folder / "day").mkdir(parents=True)
    write_jsonl(folder / "day" / "items.jl", [{"link": "https://n.example/jl", "title": "JL 文件", "text": "跨境物流"}])
    for comp, opener in ((".bz2", __import__("bz2").open), (".xz", __import__("lzma").open)):
        with opener(folder / f"more.ndjson{comp}", "wt", encoding="utf-8") as fh:
            fh.write(json.dumps({"url": f"https://n.example/{comp[1:]}", "title": "压缩", "body": "跨境物流"}) + "\n")
    (folder / "notes.txt").write_text("not a crawl", encoding="utf-8")
    (folder / "logo.png").write_bytes(b"\x89PNG")
    index = tmp_path / "ix"
    env = {**os.environ, "ZHSEARCH_INDEX": str(index)}
    proc = subprocess.run([*search_command(), "index", "--json", str(folder)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["added"] == 3 and report["unknown_formats"] == {".txt": 1, ".png": 1}
    item = {"link": "https://n.example/stdin", "title": "来自标准输入", "content": "Scrapy 的 jsonlines 输出"}
    proc = subprocess.run(
        [*search_command(), "index", "-"],
        input=json.dumps(item, ensure_ascii=False) + "\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0 and "1 added" in proc.stdout, proc.stderr
    proc = subprocess.run([*search_command(), "query", "--json", "标准输入"], capture_output=True, text=True, env=env)
    assert [r["id"] for r in json.loads(proc.stdout)["results"]] == ["https://n.example/stdin"]


CSV_ROWS = [
    ["标题", "内容", "发布时间", "链接", "关键词", "作者"],
    [
        "海外仓旺季费用上调",
        "多家海外仓宣布上调旺季费用。\n卖家需要重新核算成本。",
        "2024/07/02",
        "https://c.example/1",
        "海外仓,物流",
        "张伟",
    ],
    [
        "东南亚电商增长",
        '东南亚市场"增长"迅速，\r\n多个平台加码投入。',
        "2024-07-03 08:00",
        "https://c.example/2",
        "",
        "",
    ],
]


def _csv_text(delimiter: str = ",") -> str:
    import csv

    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerows(CSV_ROWS)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "encoding"),
    [("export.csv", "gb18030"), ("export.csv", "utf-8-sig"), ("export.tsv", "utf-8"), ("export.csv.gz", "utf-8")],
)
def test_scraping_tool_csv_exports(tmp_path, name, encoding):
    path = tmp_path / name
    data = _csv_text("\t" if name.endswith(".tsv") else ",").encode(encoding)
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    ix = IndexHarness(tmp_path / "ix")
    summary = index_paths(ix.settings, [str(path)])
    assert (summary.added, summary.rejected) == (2, [])
    docs = _urls(ix.settings)
    one = docs["https://c.example/1"]
    assert one["title"] == "海外仓旺季费用上调" and one["author"] == "张伟" and one["tags"] == ["海外仓", "物流"]
    assert one["body"] == "多家海外仓宣布上调旺季费用。\n卖家需要重新核算成本。"
    assert one["published"] == "2024-07-02"
    assert '"增长"' in docs["https://c.example/2"]["body"]
    assert ix.ids("核算成本") == ["https://c.example/1"]


def test_a_csv_row_that_breaks_is_reported_with_its_line(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(_csv_text() + "坏行,多余,的,单元格,太,多,了,啊\n", encoding="utf-8")
    summary = index_paths(IndexHarness(tmp_path / "ix").settings, [str(path)])
    assert summary.added == 2
    # The header, two rows (the first over two lines, the second over two).
    assert [r.location for r in summary.rejected] == [f"{path}:6"]


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_a_csv_with_a_damaged_byte_loses_only_its_row(tmp_path, encoding):
    """A file no encoding decodes whole (one byte damaged in a copy) is
    read in the one that leaves the fewest bytes undecoded: the row holding
    the byte is reported with its line, the others are indexed as they
    were written. Before, the whole file was refused ("cannot decode")."""
    import csv

    rows = [
        [f"海外仓第{i}期快讯", f"旺季费用上调第{i}次。", "2024/07/02", f"https://c.example/{i}", "", ""]
        for i in range(6)
    ]
    out = io.StringIO()
    csv.writer(out).writerows([CSV_ROWS[0], *rows])
    data = out.getvalue().encode(encoding)
    damaged = "第3次".encode(encoding)
    path = tmp_path / "export.csv"
    path.write_bytes(data.replace(damaged, damaged[:-1] + b"\xff"))
    ix = IndexHarness(tmp_path / "ix")
    summary = index_paths(ix.settings, [str(path)])
    docs = _urls(ix.settings)
    assert set(docs) == {f"https://c.example/{i}" for i in range(6) if i != 3}, summary.to_dict()
    assert docs["https://c.example/4"]["title"] == "海外仓第4期快讯"
    assert [r.location for r in summary.rejected] == [f"{path}:5"]


def test_an_excel_workbook(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["编号", "标题", "正文", "日期", "网址"])
    sheet.append(
        [101, "跨境支付新规", "跨境支付机构需要完成备案。", dt.datetime(2024, 7, 2, 9, 30), "https://x.example/101"]
    )
    sheet.append([102, "直播电商观察", "直播带货的退货率居高不下。", "2024年7月4日", None])
    book.create_sheet("其他").append(["不读", "第二张表"])
    path = tmp_path / "export.xlsx"
    book.save(path)
    ix = IndexHarness(tmp_path / "ix")
    summary = index_paths(ix.settings, [str(path)])
    assert summary.added == 1
    assert [r.location for r in summary.rejected] == [f"{path}:3"] and "id" in summary.rejected[0].reason
    assert _urls(ix.settings)["https://x.example/101"]["published"] == "2024-07-02T09:30:00"
    # 编号 is no name we know: map it.
    mapped = ix.settings.replace(index=tmp_path / "ix2", field_map={"id": "编号"})
    summary = index_paths(mapped, [str(path)])
    assert (summary.added, summary.rejected) == (2, [])
    docs = _urls(mapped)
    assert sorted(docs) == ["101", "102"] and docs["102"]["published"] == "2024-07-04"
    assert docs["101"]["url"] == "https://x.example/101" and docs["102"]["title"] == "直播电商观察"


def test_mongoexport_extended_json(tmp_path):
    lines = [
        {
            "_id": {"$oid": "66838a0f2f1b2c3d4e5f6a7b"},
            "url": "https://m.example/1",
            "title": "拼多多 Temu 欧洲站",
            "content": "Temu 在欧洲市场加速扩张。",
            "publish_time": {"$date": "2024-07-02T02:30:00Z"},
            "tags": ["Temu", "欧洲"],
        },
        {
            "_id": {"$oid": "66838a0f2f1b2c3d4e5f6a7c"},
            "url": "https://m.example/2",
            "title": "SHEIN 上市进展",
            "content": "SHEIN 的上市计划再次引发关注。",
            "publish_time": {"$date": {"$numberLong": "1720000000000"}},
        },
    ]
    ix = IndexHarness(tmp_path / "ix")
    summary = index_paths(ix.settings, [str(write_jsonl(tmp_path / "articles.json", lines))])
    assert (summary.added, summary.rejected) == (2, [])
    docs = _urls(ix.settings)
    assert docs["https://m.example/1"]["published"] == "2024-07-02T02:30:00+00:00"
    assert docs["https://m.example/2"]["published"] == "2024-07-03T17:46:40+08:00"
    assert ix.ids("欧洲", since=dt.date(2024, 7, 2)) == ["https://m.example/1"]


def test_field_option_and_the_hint_for_an_unmapped_long_field(tmp_path):
    runner = CliRunner()
    index = tmp_path / "ix"
    long_text = "这是一篇关于跨境电商物流的长文章。" * 20
    path = write_jsonl(
        tmp_path / "c.jsonl", [{"url": "https://f.example/1", "headline2": "标题", "news_body": long_text}]
    )
    result = runner.invoke(cli, ["--index", str(index), "index", str(path)])
    assert result.exit_code == 0
    assert "field 'news_body' holds long text" in result.output and "--field body=news_body" in result.output
    assert f"{path}:1" in result.output
    result = runner.invoke(
        cli, ["--index", str(index), "index", "--field", "body=news_body", "--field", "title=headline2", str(path)]
    )
    assert result.exit_code == 0 and "1 added" in result.output, result.output
    assert "holds long text" not in result.output
    assert (
        runner.invoke(cli, ["--index", str(index), "query", "--json", "物流"]).output.count("https://f.example/1") >= 1
    )
    config = tmp_path / "zhsearch.toml"
    config.write_text('[fields]\nbody = "news_body"\ntitle = "nope"\n', encoding="utf-8")
    result = runner.invoke(
        cli, ["--index", str(index), "index", "--config", str(config), "--field", "title=headline2", str(path)]
    )
    assert result.exit_code == 0 and "1 unchanged" in result.output, result.output
    result = runner.invoke(cli, ["--index", str(index), "index", "--field", "bodyy=x", str(path)])
    assert result.exit_code != 0 and "cannot map to bodyy" in result.output


# ------------------------------------------------ runs that must not delete


def _snapshot(index: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(index)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(index.rglob("*"))
        if p.is_file() and p.name != ".writer.lock"
    }


@pytest.fixture
def live_index(tmp_path):
    index = tmp_path / "ix"
    crawl = write_jsonl(tmp_path / "live.jsonl", [{"id": f"d{i}", "title": f"文章{i} 物流"} for i in range(10)])
    assert CliRunner().invoke(cli, ["--index", str(index), "index", str(crawl)]).exit_code == 0
    return index


def _refusals(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    crawl = tmp_path / "in"
    crawl.mkdir(parents=True)
    some = write_jsonl(crawl / "some.jsonl", [{"id": f"d{i}", "title": f"文章{i} 物流"} for i in range(8)])
    (crawl / "unknown.foo").write_text("?", encoding="utf-8")
    (crawl / "empty").mkdir()
    cut = crawl / "cut.jsonl.gz"
    data = gzip.compress(some.read_bytes())
    cut.write_bytes(data[: len(data) // 2])
    links = crawl / "links"
    links.mkdir()
    write_jsonl(links / "part-1.jsonl", [{"id": "d9", "title": "文章9 物流"}])
    (links / "part-2.jsonl").symlink_to(crawl / "moved-away.jsonl")
    few = write_jsonl(crawl / "few.jsonl", [{"id": "d0", "title": "文章0 物流"}])
    bad_byte = crawl / "bad-byte.jsonl"
    bad_byte.write_bytes(some.read_bytes() + b'{"id": "d9", "title": "\xff"}\n')
    return {
        "unknown format": ([str(some), str(crawl / "unknown.foo")], "unknown format"),
        "empty folder": ([str(some), str(crawl / "empty")], "no crawl file"),
        "truncated gzip": ([str(cut)], "Compressed file ended"),
        "invalid UTF-8 line": ([str(bad_byte)], "bad-byte.jsonl:9: not valid UTF-8"),
        "unreadable file": ([str(some), str(links)], "could not be read completely"),
        "more than half deleted": ([str(few)], "refusing to delete 9 of the 10"),
    }


@pytest.mark.parametrize("mode", ["--prune", "--rebuild"])
def test_every_refusal_leaves_the_index_exactly_as_it_was(live_index, tmp_path, mode):
    runner = CliRunner()
    before = _snapshot(live_index)
    for what, (paths, message) in _refusals(tmp_path).items():
        result = runner.invoke(cli, ["--index", str(live_index), "index", mode, *paths])
        assert result.exit_code == 1, (what, result.output)
        assert message in result.output and "Traceback" not in result.output, (what, result.output)
        assert _snapshot(live_index) == before, what
    # --force overrides the size guard only.
    refusals = _refusals(tmp_path / "again")
    result = runner.invoke(cli, ["--index", str(live_index), "index", mode, "--force", *refusals["truncated gzip"][0]])
    assert result.exit_code == 1 and _snapshot(live_index) == before
    result = runner.invoke(
        cli, ["--index", str(live_index), "index", mode, "--force", *refusals["more than half deleted"][0]]
    )
    assert result.exit_code == 0, result.output
    assert [d["id"] for d in export_documents(Settings(index=live_index))] == ["d0"]


def test_a_named_file_with_no_record_writes_nothing(live_index, tmp_path):
    before = _snapshot(live_index)
    junk = write_jsonl(tmp_path / "junk.jsonl", ["not json", "{broken"])
    result = CliRunner().invoke(cli, ["--index", str(live_index), "index", str(junk)])
    assert result.exit_code == 1 and "no record could be read" in result.output
    assert _snapshot(live_index) == before


def test_a_folder_that_cannot_be_listed_is_unreadable_input():
    # In a folder of its own that any user may enter (a test's own temporary
    # folder is its owner's alone), so that an unprivileged user can look.
    crawl = Path(tempfile.mkdtemp(prefix="zhsearch-locked-"))
    crawl.chmod(0o755)
    (crawl / "locked").mkdir()
    write_jsonl(crawl / "a.jsonl", [{"id": "a", "title": "可读"}])
    write_jsonl(crawl / "locked" / "b.jsonl", [{"id": "b", "title": "锁住"}])
    os.chmod(crawl / "locked", 0)
    try:
        if os.geteuid() == 0:
            # Root reads any folder: look as an unprivileged user would.
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(read)
                    os.setgid(65534)
                    os.setuid(65534)
                    found = find_files([str(crawl)])
                    os.write(write, json.dumps([b.location for b in found.unreadable]).encode())
                finally:
                    os._exit(0)
            os.close(write)
            with os.fdopen(read) as fh:
                unreadable = json.loads(fh.read() or "null")
            os.waitpid(pid, 0)
        else:
            unreadable = [b.location for b in find_files([str(crawl)]).unreadable]
    finally:
        os.chmod(crawl / "locked", 0o755)
        shutil.rmtree(crawl)
    assert unreadable == [str(crawl / "locked")]


def test_sockets_and_dangling_links_in_a_folder_are_not_ignored(tmp_path):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    write_jsonl(crawl / "a.jsonl", [{"id": "a", "title": "可读"}])
    (crawl / "b.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(crawl / "c.jsonl"))
        found = find_files([str(crawl)])
    assert [Path(f.path).name for f in found.files] == ["a.jsonl"]
    assert sorted(Path(b.location).name for b in found.unreadable) == ["b.jsonl", "c.jsonl"]


def test_an_index_from_before_the_crawl_fields_takes_crawled_pages(tmp_path):
    from indexer.schema import build_schema
    from indexer.store import IndexStore

    schema = build_schema()
    schema.remove("crawled")
    schema.remove("crawl_url")
    store = IndexStore(tmp_path / "ix")
    name, _ix = store.create_generation(schema)
    store.switch_to(name)
    ix = IndexHarness(tmp_path, index=tmp_path / "ix")
    record = {"url": "https://o.example/1", "title": "旧索引", "body": "跨境物流", "crawled": "2024-07-02T00:00:00Z"}
    summary = ix.add([record])
    assert summary.added == 1
    assert _urls(ix.settings)["https://o.example/1"]["title"] == "旧索引"
