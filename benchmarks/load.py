"""Concurrent HTTP load on /api/search: latency percentiles and errors.

Starts `search serve` on a free local port over an existing index (or uses
--base), then runs N client threads, each sending the queries of a query
file in turn for the given time. Only loopback traffic.

    python benchmarks/load.py --index /path/to/index \\
        --queries ../shared/corpora/queries/knownitem_poetry.queries.jsonl \\
        --clients 8 --workers 2 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: str, workers: int) -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).with_name("search")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cli"]
    port = free_port()
    proc = subprocess.Popen(
        [*cmd, "--index", index, "serve", "--port", str(port), "--workers", str(workers)],
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/api/health", timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("server did not start")


def run(base: str, queries: list[str], clients: int, seconds: float, size: int, once: bool = False) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        i = offset
        while time.monotonic() < stop and not (once and i >= len(queries)):
            q = queries[i % len(queries)]
            i += clients
            url = f"{base}/api/search?" + urllib.parse.urlencode({"q": q, "size": size})
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    r.read()
                    ok = r.status == 200
            except (OSError, urllib.error.HTTPError) as err:
                ok = False
                with lock:
                    errors.append(str(err))
            elapsed = (time.perf_counter() - started) * 1000
            if ok:
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "requests_per_second": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "first_errors": errors[:3],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", required=True, help="JSON Lines with a 'query' field")
    ap.add_argument("--index", help="index to serve (starts `search serve`)")
    ap.add_argument("--base", help="an already running server, e.g. http://127.0.0.1:8000")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--size", type=int, default=10)
    ap.add_argument(
        "--once",
        action="store_true",
        help="send each query once (cold figures: repeated queries are answered from the per-commit cache)",
    )
    args = ap.parse_args()
    if not (args.index or args.base):
        ap.error("give --index or --base")
    with open(args.queries, encoding="utf-8") as fh:
        queries = [json.loads(line)["query"] for line in fh if line.strip()]
    proc = None
    base = args.base
    if args.index:
        proc, base = start_server(args.index, args.workers)
    try:
        for _ in range(args.workers * 2):  # open every worker's searcher (a query not in the set)
            urllib.request.urlopen(f"{base}/api/search?" + urllib.parse.urlencode({"q": "预热"})).read()
        figures = run(base, queries, args.clients, args.seconds, args.size, once=args.once)
        figures["once"] = args.once
        figures["workers"] = args.workers if args.index else None
        print(json.dumps(figures, ensure_ascii=False))
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
