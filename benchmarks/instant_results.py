"""Keystroke-to-results latency of the search page's results while typing,
measured in a real browser (Debian's chromium driven by Playwright) against
a real `search serve` on a free local port. Only loopback traffic.

Two figures, both from the browser's own clock:

- per keystroke: each query is typed a character at a time, and each
  character waits for its results; the time from the keystroke's input
  event to the first frame after the results for exactly the box's text
  are in the page (debounce, request, server, parsing and layout);
- typed at speed: each query is typed at ``--typing-ms`` per character
  (faster than the debounce), and the time is from the last keystroke to
  the final results (requests for the text before are cancelled).

    python -m benchmarks.instant_results --sample
    python -m benchmarks.instant_results --index /path/to/index --query 数据透视表 --query 冻结首行
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.load import percentile, start_server
from indexer.config import Settings
from search.engine import SearchEngine
from search.frequent import frequent_title_words

#: Debian's chromium (never a downloaded browser build).
CHROMIUM = os.environ.get("ZHSEARCH_CHROMIUM", "chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

#: Records each input event's time and, when the results for exactly the
#: box's text have been put in the page (the script's `zhsearch:results`
#: event), the time of the next frame.
_LISTEN = """() => {
  window.latencies = [];
  const box = document.getElementById('q');
  box.addEventListener('input', e => { window.typedAt = e.timeStamp; });
  document.addEventListener('zhsearch:results', e => {
    if (e.detail.q !== box.value) return;
    const typed = window.typedAt;
    requestAnimationFrame(() => setTimeout(() => {
      window.latencies.push({q: e.detail.q, ms: performance.now() - typed});
    }, 0));
  });
}"""


def default_queries(index: Path) -> list[str]:
    """Pairs of the index's most frequent title words, when none are given."""
    engine = SearchEngine(Settings.load({"index": index}))
    words = frequent_title_words(engine.title_frequencies(), 8)
    engine.close()
    return [f"{a} {b}" for a, b in zip(words[::2], words[1::2], strict=False)] or words


def measure(base: str, queries: list[str], typing_ms: float | None) -> list[float | None]:
    """Latencies in milliseconds (None for results that never came): of each
    keystroke, typing one character at a time (``typing_ms`` None), or of
    each query's last keystroke, typed at ``typing_ms`` per character."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    latencies: list[float | None] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which(CHROMIUM) or CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page.goto(base + "/")
        page.evaluate(_LISTEN)
        box = page.locator("#q")
        for q in queries:
            box.fill("")
            for keys in [q] if typing_ms else list(q):
                count = page.evaluate("window.latencies.length")
                page.keyboard.type(keys, delay=typing_ms or 0)
                try:
                    page.wait_for_function(f"() => window.latencies.length > {count}", timeout=10_000)
                    latencies.append(page.evaluate("window.latencies[window.latencies.length - 1].ms"))
                except PlaywrightTimeout:
                    latencies.append(None)
        browser.close()
    return latencies


def summary(latencies: list[float | None]) -> dict:
    got = [ms for ms in latencies if ms is not None]
    return {
        "count": len(got),
        "missed": len(latencies) - len(got),
        "p50_ms": round(statistics.median(got), 1) if got else None,
        "p95_ms": round(percentile(got, 95), 1),
        "max_ms": round(max(got, default=0), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--index", help="an index to serve")
    where.add_argument("--sample", action="store_true", help="index the shipped sample articles first")
    ap.add_argument("--query", action="append", help="a query to type (repeatable); default: the index's own words")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--typing-ms", type=float, default=60, help="delay between keys when typed at speed")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(args.index) if args.index else Path(tmp) / "index"
        if args.sample:
            exe = Path(sys.executable).with_name("search")
            cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cli"]
            subprocess.run([*cmd, "--index", str(index), "index", "--sample"], check=True, capture_output=True)
        queries = args.query or default_queries(index)
        started = time.monotonic()
        results = {}
        # A fresh server for each pass: the engine caches answers, and the
        # second pass would otherwise find every query answered already.
        for name, typing_ms in (("per_keystroke", None), ("typed_at_speed", args.typing_ms)):
            proc, base = start_server(str(index), args.workers)
            try:
                results[name] = summary(measure(base, queries, typing_ms))
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
    report = {
        "index": "sample" if args.sample else str(index),
        "queries": queries,
        "workers": args.workers,
        "typing_ms": args.typing_ms,
        "seconds": round(time.monotonic() - started, 1),
        **results,
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
