"""Probe latency while idle, half-sent connections are held open.

Starts `search serve` over --index on 127.0.0.1, opens --idle connections
that each send the start of a request and never finish it, then sends
--probes complete searches one after another and prints their latency.
With sync workers, as many idle sockets as workers stopped the site.

    python benchmarks/slow_clients.py --index DIR [--idle 50] [--probes 50] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

QUERIES = ["跨境电商", "物流", "春风", "亚马逊", "海外仓", "明月"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--idle", type=int, default=50)
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    port = _free_port()
    search = Path(sys.executable).with_name("search")
    env = {**os.environ, "ZHSEARCH_INDEX": str(args.index)}
    server = subprocess.Popen(
        [str(search), "serve", "--port", str(port), "--workers", str(args.workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/api/health", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print("search serve did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        for _ in range(args.idle):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /api/search?q=x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            idle.append(sock)
        latencies, failures = [], 0
        for n in range(args.probes):
            q = urllib.parse.quote(QUERIES[n % len(QUERIES)])
            started = time.perf_counter()
            try:
                urllib.request.urlopen(f"{base}/api/search?q={q}&page={n // len(QUERIES) + 1}", timeout=5).read()
                latencies.append(time.perf_counter() - started)
            except OSError:
                failures += 1
    finally:
        for sock in idle:
            sock.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    latencies.sort()
    figures = {
        "idle_connections": args.idle,
        "probes": args.probes,
        "failed": failures,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
    }
    print(json.dumps(figures, indent=2) if args.json else " ".join(f"{k}={v}" for k, v in figures.items()))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
