"""What the index holds about a crawl's pages: sources, tags, dates, clean bodies.

Indexes a folder of crawled pages the way ``search index`` does (into a
temporary index, or reads an index already built with ``--index``) and
counts, over the stored documents:

- pages with a source, the number of distinct sources and the largest ones;
- pages with tags, per site (the host, or the top folder of a local file);
- pages with a published date, and the earliest and latest;
- bodies still holding markdown table pipes (``| a | b |``, ``|---|``).

With ``--reference`` (a JSON Lines file with ``id`` and ``title``, such as
``articles-html.jsonl``) it also counts titles equal to the reference's.

    python benchmarks/metadata.py --html ../shared/corpora/html \\
        [--site-rules indexer/data/site-rules.example.toml] \\
        [--reference ../shared/corpora/articles-html.jsonl] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from indexer.config import Settings
from indexer.writer import export_documents, index_paths

#: A body line laid out as a markdown table row (``| a | b |``) or rule
#: (``|---|---|``); a diagram in a ``<pre>`` block (``   |    ^``) is none.
TABLE_PIPES_RE = re.compile(r"^\|[^\n]*\|$|^\|?(?:\s*:?-{3,}:?\s*\|)+", re.M)


def site_of(doc: dict[str, Any]) -> str:
    """The host of the document's URL, else the first part of its id (the
    top folder of a page indexed from a folder)."""
    url = doc.get("url") or ""
    m = re.match(r"https?://([^/:?#]+)", url)
    if m:
        return m.group(1).lower()
    return str(doc["id"]).split("/", 1)[0]


def figures(docs: list[dict[str, Any]], reference: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The counts above, over stored documents (as ``search export`` gives them)."""
    total = len(docs)
    sources = Counter(d["source"] for d in docs if d.get("source"))
    dated = sorted(str(d["published"])[:10] for d in docs if d.get("published"))
    by_site: dict[str, Counter] = {}
    for d in docs:
        row = by_site.setdefault(site_of(d), Counter())
        row["pages"] += 1
        row["with_tags"] += bool(d.get("tags"))
        row["with_published"] += bool(d.get("published"))
        row["with_author"] += bool(d.get("author"))
        row["with_crawled"] += bool(d.get("crawled"))
    out: dict[str, Any] = {
        "pages": total,
        "with_source": sum(sources.values()),
        "with_source_share": round(sum(sources.values()) / total, 4) if total else 0.0,
        "distinct_sources": len(sources),
        "largest_sources": sources.most_common(5),
        "with_tags": sum(bool(d.get("tags")) for d in docs),
        "with_published": len(dated),
        "earliest_published": dated[0] if dated else None,
        "latest_published": dated[-1] if dated else None,
        "bodies_with_table_pipes": sum(bool(TABLE_PIPES_RE.search(d.get("body") or "")) for d in docs),
        "sites": {site: dict(row) for site, row in sorted(by_site.items(), key=lambda kv: -kv[1]["pages"])},
    }
    if reference is not None:
        compared = [d for d in docs if d["id"] in reference]
        out["titles_compared"] = len(compared)
        out["titles_equal_to_reference"] = sum((d.get("title") or None) == reference[d["id"]] for d in compared)
    return out


def build(html: Path, site_rules: str | None, index: Path) -> float:
    settings = Settings.load({"index": index, "site_rules": site_rules}, environ={})
    started = time.perf_counter()
    index_paths(settings, [str(html)])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, help="folder of crawled pages to index (into a temporary index)")
    parser.add_argument("--index", type=Path, help="read this index instead of building one")
    parser.add_argument("--site-rules", default=None)
    parser.add_argument("--reference", type=Path, help="JSON Lines with id and title, to compare titles with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.html and not args.index:
        parser.error("give --html (a folder to index) or --index (an index to read)")
    reference = None
    if args.reference:
        with open(args.reference, encoding="utf-8") as fh:
            reference = {doc["id"]: doc.get("title") for doc in map(json.loads, fh)}
    with tempfile.TemporaryDirectory(prefix="metadata-") as tmp:
        index = args.index or Path(tmp) / "index"
        seconds = build(args.html, args.site_rules, index) if args.html else None
        docs = list(export_documents(Settings.load({"index": index}, environ={})))
    result = figures(docs, reference)
    result["site_rules"] = args.site_rules
    result["index_seconds"] = round(seconds, 1) if seconds is not None else None
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    for key, value in result.items():
        if key == "sites":
            for site, row in value.items():
                print(f"  {site:<32} " + " ".join(f"{k}={v}" for k, v in row.items()))
        else:
            print(f"{key:<28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
