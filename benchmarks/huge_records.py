"""Peak memory of a build fed huge records, against the writer's budget.

Writes --records records whose bodies are --chars random CJK characters
(seeded: almost every bigram distinct, the worst case for the gram fields;
1,700,000 characters are 5 MB of UTF-8), then runs ``search index`` on
them in a child process with ``ZHSEARCH_WRITER_MEMORY_MB=--budget-mb`` and
prints the largest resident set of any of its processes (the parent and
its indexing workers), as ``/usr/bin/time -v`` would.

    python benchmarks/huge_records.py --records 20 --chars 1700000 --budget-mb 512 [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_records(path: Path, records: int, chars: int, seed: int = 0) -> int:
    """The records, one at a time (this process stays small: a child's peak
    as Linux reports it starts from its parent's)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(records):
            body = "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(chars))
            fh.write(json.dumps({"id": f"huge-{i}", "title": f"大文档{i}", "body": body}, ensure_ascii=False) + "\n")
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--chars", type=int, default=1_700_000)
    parser.add_argument("--budget-mb", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zhsearch-huge-") as tmp:
        data = Path(tmp) / "huge.jsonl"
        size = write_records(data, args.records, args.chars)
        env = {**os.environ, "ZHSEARCH_WRITER_MEMORY_MB": str(args.budget_mb)}
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), "--index", str(Path(tmp) / "index"), "index", str(data)],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures = {
        "records": args.records,
        "mb_per_record": round(size / args.records / 1_048_576, 2),
        "budget_mb": args.budget_mb,
        "peak_mb": round(peak_mb, 1),
        "seconds": round(seconds, 1),
        "summary": proc.stdout.strip(),
    }
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
