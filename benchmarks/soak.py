"""Search while reindexing: many HTTP clients against `search serve` while
batches of adds, updates and deletes are indexed and a full rebuild runs.

Reports requests served, errors and latency percentiles, then checks that
every document of the final crawl is served by id, in its latest version,
and that every deleted one is gone. Exits 1 on any error, lost or stale
document. Only loopback traffic; every loop is bounded in time.

    python benchmarks/soak.py --clients 50 --seconds 300 --workers 2 [--docs 3000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

TOPICS = [
    "跨境物流",
    "海外仓",
    "独立站",
    "支付合规",
    "直播带货",
    "品牌出海",
    "亚马逊",
    "TikTok Shop",
    "东南亚",
    "黑色星期五",
]


def article(doc_id: str, version: int, topic: str) -> dict:
    return {
        "id": doc_id,
        "title": f"{topic}动态 {doc_id}",
        "body": f"版本{version}。" + f"{topic}方面，卖家正在调整备货、广告和定价策略，平台规则也在变化。" * 6,
        "tags": [topic],
        "published": f"2024-{random.randint(1, 12):02d}-{random.randint(1, 28):02d}",
    }


def search_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("search")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_jsonl(path: Path, records) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))] if ordered else 0.0


def get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def client_url(base: str, r: random.Random, stable: list[str]) -> str:
    """A soak client's next request: a search among a few topics (70 %, so
    mostly repeated and answered from the per-commit cache, as a popular
    site's searches are) or a document that no batch touches, by id
    (quoted: a crawl's ids may be Chinese). Other benchmarks send the same
    mix (serving.py's soak_mix)."""
    if r.random() < 0.7:
        q = r.choice(TOPICS) + (" " + r.choice(["卖家", "广告", "定价", "平台"]) if r.random() < 0.5 else "")
        return f"{base}/api/search?" + urllib.parse.urlencode({"q": q, "size": 10})
    return f"{base}/api/doc/{urllib.parse.quote(r.choice(stable))}"


#: Batches indexed (besides the rebuild) whatever ``--seconds`` says.
MIN_BATCHES = 2


def run(clients: int, seconds: float, workers: int, docs: int, batch: int, work: Path) -> dict:
    rng = random.Random(7)
    random.seed(7)
    env = {**os.environ, "ZHSEARCH_INDEX": str(work / "index")}
    # The crawl as it stands: id -> (version, topic). "stable" ids are never
    # touched by the batches, so clients can always expect them.
    crawl = {f"d{i}": (1, TOPICS[i % len(TOPICS)]) for i in range(docs)}
    stable = [f"d{i}" for i in range(0, docs, 10)]
    mutable = [d for d in crawl if d not in set(stable)]
    deleted: set[str] = set()
    first = write_jsonl(work / "crawl-0.jsonl", (article(d, v, t) for d, (v, t) in crawl.items()))
    subprocess.run([*search_cmd(), "index", str(first)], env=env, check=True, stdout=subprocess.DEVNULL)

    port = free_port()
    server = subprocess.Popen(
        [*search_cmd(), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        return _soak(base, server, clients, workers, seconds, work, env, rng, crawl, stable, mutable, deleted, batch)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def _soak(base, server, clients, workers, seconds, work, env, rng, crawl, stable, mutable, deleted, batch) -> dict:
    """The clients, the reindexing and the final check (the server is up)."""
    deadline = time.monotonic() + 60
    while get_health(base) != 200:
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("server did not start")
        time.sleep(0.2)

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int) -> None:
        r = random.Random(seed)
        while not stop.is_set():
            url = client_url(base, r, stable)
            started = time.perf_counter()
            try:
                status, body = get(url)
                ok = status == 200
                why = f"{status} {url} {body[:120]!r}"
            except OSError as err:
                ok, why = False, f"{type(err).__name__}: {err} {url}"
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                if not ok:
                    errors.append(why)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()

    batches = 0
    rebuild_seconds = None
    next_id = len(crawl) + len(deleted)
    end = started + seconds
    # At least two batches and the rebuild, however slow the machine: a
    # short soak on a busy one ran out of time after one batch.
    while time.monotonic() < end or batches < MIN_BATCHES or rebuild_seconds is None:
        live_mutable = [d for d in mutable if d in crawl]
        updates = rng.sample(live_mutable, min(batch, len(live_mutable)))
        removals = rng.sample(
            [d for d in live_mutable if d not in updates], min(batch // 2, len(live_mutable) - len(updates))
        )
        records = []
        for d in updates:
            v, t = crawl[d]
            crawl[d] = (v + 1, t)
            records.append(article(d, v + 1, t))
        for d in removals:
            del crawl[d]
            deleted.add(d)
            records.append({"id": d, "deleted": True})
        for _ in range(batch):
            d = f"d{next_id}"
            next_id += 1
            crawl[d] = (1, rng.choice(TOPICS))
            mutable.append(d)
            records.append(article(d, 1, crawl[d][1]))
        path = write_jsonl(work / f"batch-{batches}.jsonl", records)
        subprocess.run([*search_cmd(), "index", str(path)], env=env, check=True, stdout=subprocess.DEVNULL)
        batches += 1
        if rebuild_seconds is None and time.monotonic() > started + seconds / 3:
            full = write_jsonl(work / "full.jsonl", (article(d, v, t) for d, (v, t) in crawl.items()))
            t0 = time.monotonic()
            subprocess.run(
                [*search_cmd(), "index", "--rebuild", str(full)], env=env, check=True, stdout=subprocess.DEVNULL
            )
            rebuild_seconds = round(time.monotonic() - t0, 1)
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    wall = time.monotonic() - started

    # Every document of the final crawl, by id (8 at a time), then every
    # deleted one.
    def verify(item: tuple[str, int | None]) -> str | None:
        doc_id, version = item
        status, body = get(f"{base}/api/doc/{doc_id}?related=0")
        if version is None:
            return None if status == 404 else "not_deleted"
        if status != 200:
            return "lost"
        return None if f"版本{version}。" in json.loads(body)["document"]["body"] else "stale"

    from concurrent.futures import ThreadPoolExecutor

    items = [(d, v) for d, (v, _t) in crawl.items()] + [(d, None) for d in deleted]
    with ThreadPoolExecutor(8) as pool:
        outcomes = [o for o in pool.map(verify, items) if o]
    lost = [o for o in outcomes if o == "lost"]
    stale = [o for o in outcomes if o == "stale"]
    undeleted = [o for o in outcomes if o == "not_deleted"]
    return {
        "clients": clients,
        "workers": workers,
        "seconds": round(wall, 1),
        "requests": len(latencies),
        "errors": len(errors),
        "requests_per_second": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "batches": batches,
        "rebuild_seconds": rebuild_seconds,
        "final_documents": len(crawl),
        "deleted_documents": len(deleted),
        "lost": len(lost),
        "stale": len(stale),
        "not_deleted": len(undeleted),
        "first_errors": errors[:3],
    }


def get_health(base: str) -> int | None:
    try:
        return get(base + "/api/health", timeout=2)[0]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=100, help="updates and additions per batch (half as many deletes)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zhsearch-soak-") as tmp:
        figures = run(args.clients, args.seconds, args.workers, args.docs, args.batch, Path(tmp))
    print(
        json.dumps(figures, ensure_ascii=False) if args.json else "\n".join(f"{k:<20} {v}" for k, v in figures.items())
    )
    return figures


if __name__ == "__main__":
    result = main()
    sys.exit(1 if result["errors"] or result["lost"] or result["stale"] or result["not_deleted"] else 0)
