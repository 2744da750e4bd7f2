"""The cost of one hop to a shard: a Ray actor method call against a call
through a Ray Serve deployment handle, for the same object and payload.

A sharded query makes three such hops per shard (statistics, candidates,
hits), so the lighter of the two serves the shards (``search.shards`` uses
actors). Both are measured on an embedded Ray on 127.0.0.1, one caller at a
time, after a warm-up, with a reply shaped like a shard's candidates (a
page's worth of ids, scores and sort keys). Ray Serve is not a dependency
of the project; without it, only the actor is measured.

    pip install 'ray[serve]'   # only for the Serve half
    python benchmarks/ray_hop.py [--calls 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


class Shard:
    """Stands for a shard searcher: answers with what it is sent back."""

    def candidates(self, reply: Any) -> Any:
        return reply


def _reply(size: int = 100) -> list[tuple[float, tuple[int, int], str, int]]:
    return [(12.5 - i * 0.01, (i, 7), f"https://example.com/news/{i:08d}.html", 20240101 + i) for i in range(size)]


def timed(call: Callable[[], Any], calls: int) -> dict[str, float]:
    for _ in range(min(200, calls)):
        call()
    laps = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        laps.append((time.perf_counter() - t0) * 1000)
    laps.sort()
    return {
        "mean_ms": round(statistics.fmean(laps), 3),
        "p50_ms": round(laps[len(laps) // 2], 3),
        "p95_ms": round(laps[int(len(laps) * 0.95)], 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    reply = _reply()
    figures: dict[str, Any] = {"calls": args.calls, "ray": ray.__version__}
    try:
        actor = ray.remote(num_cpus=0)(Shard).remote()
        figures["actor"] = timed(lambda: ray.get(actor.candidates.remote(reply)), args.calls)
        try:
            from ray import serve
        except ImportError as err:
            figures["serve"] = f"not measured: {err} (pip install 'ray[serve]')"
        else:
            serve.start(http_options={"host": "127.0.0.1"})
            deployment = serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})(Shard)
            handle = serve.run(deployment.bind(), name="shard", route_prefix=None)
            figures["serve"] = timed(lambda: handle.candidates.remote(reply).result(), args.calls)
            serve.shutdown()
    finally:
        ray.shutdown()
    print(json.dumps(figures, indent=None if args.json else 1))
    return figures


if __name__ == "__main__":
    main()
