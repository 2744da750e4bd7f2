"""Indexing from a web archive against indexing the same pages from a folder.

Packs every ``.html`` page under --html into one gzipped WARC with warcio's
writer (one HTTP response record each, ``Content-Type: text/html`` without a
charset, so decoding goes by the page as it does for files), then builds one
index from the folder and one from the WARC, in alternating order over
--runs rounds, and prints pages per second for each and their ratio. Both
go through the same extraction and writing; the difference is the reading.

    python benchmarks/warc_ingest.py --html ../shared/corpora/html [--runs 1] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from indexer.config import Settings
from indexer.writer import index_paths


def pack(folder: Path, out: Path) -> int:
    """Every page under ``folder`` as a response record of ``out``."""
    count = 0
    with open(out, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for page in sorted(folder.rglob("*")):
            if not page.is_file() or page.suffix.lower() not in (".html", ".htm"):
                continue
            url = "https://pages.example/" + page.relative_to(folder).as_posix()
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            record = writer.create_warc_record(
                url, "response", payload=io.BytesIO(page.read_bytes()), http_headers=headers
            )
            writer.write_record(record)
            count += 1
    return count


def timed_build(source: Path, index: Path) -> dict:
    settings = Settings.load({"index": index}, environ={})
    started = time.perf_counter()
    summary = index_paths(settings, [str(source)])
    seconds = time.perf_counter() - started
    return {"pages": summary.pages, "added": summary.added, "seconds": round(seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, required=True, help="folder of crawled pages")
    parser.add_argument("--runs", type=int, default=1, help="rounds of both builds, alternating which goes first")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.html.is_dir():
        print(f"{args.html}: no such folder", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="zhsearch-warc-") as tmp:
        warc = Path(tmp) / "pages.warc.gz"
        started = time.perf_counter()
        packed = pack(args.html, warc)
        pack_seconds = time.perf_counter() - started
        runs: dict[str, list[dict]] = {"folder": [], "warc": []}
        for round_ in range(args.runs):
            order = [("folder", args.html), ("warc", warc)]
            for name, source in order if round_ % 2 == 0 else order[::-1]:
                runs[name].append(timed_build(source, Path(tmp) / f"{name}-{round_}"))
    rates = {name: statistics.median(r["pages"] / r["seconds"] for r in results) for name, results in runs.items()}
    figures = {
        "pages_packed": packed,
        "pack_seconds": round(pack_seconds, 2),
        "folder": runs["folder"],
        "warc": runs["warc"],
        "folder_pages_per_second": round(rates["folder"], 1),
        "warc_pages_per_second": round(rates["warc"], 1),
        "warc_to_folder": round(rates["warc"] / rates["folder"], 3),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
