"""Main-content extraction quality against the reference bodies.

For every page under --html (ids are paths relative to --root, as in
articles-html.jsonl), extract the body as `search index` would and compare it
with the reference body: character-level precision, recall and F1 over the
non-space characters (multiset overlap). Also counts pages whose body still
holds page chrome, and pages per second.

    python benchmarks/extraction.py --root ../shared/corpora/html \\
        --html ../shared/corpora/html/libreoffice-help-zh-cn \\
        --reference ../shared/corpora/articles-html.jsonl \\
        [--site-rules indexer/data/site-rules.example.toml] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

from indexer.html import HtmlError, decode, extract
from indexer.siterules import load_rules

CHROME = ("🔎", "Help content debug info", "This page is:")


def char_prf(extracted: str, reference: str) -> tuple[float, float, float]:
    a = Counter(ch for ch in extracted if not ch.isspace())
    b = Counter(ch for ch in reference if not ch.isspace())
    if not a and not b:
        return 1.0, 1.0, 1.0
    common = sum((a & b).values())
    p = common / sum(a.values()) if a else 0.0
    r = common / sum(b.values()) if b else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--html", type=Path, required=True)
    ap.add_argument("--reference", type=Path, required=True)
    ap.add_argument("--site-rules", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    reference = {}
    with open(args.reference, encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            reference[doc["id"]] = doc.get("body") or ""
    rules = load_rules(args.site_rules)
    pages = sorted(p for p in args.html.rglob("*") if p.suffix.lower() in (".html", ".htm"))
    scores = []
    chrome = []
    failed = []
    started = time.perf_counter()
    for path in pages:
        rel = path.relative_to(args.root).as_posix()
        text, _enc = decode(path.read_bytes())
        try:
            body = extract(text, rules=rules, location=rel).body
        except HtmlError as err:
            failed.append((rel, str(err)))
            body = ""
        if any(c in body for c in CHROME):
            chrome.append(rel)
        if rel in reference:
            scores.append(char_prf(body, reference[rel]))
    seconds = time.perf_counter() - started
    figures = {
        "pages": len(pages),
        "compared": len(scores),
        "precision_median": round(statistics.median(s[0] for s in scores), 4),
        "recall_median": round(statistics.median(s[1] for s in scores), 4),
        "f1_median": round(statistics.median(s[2] for s in scores), 4),
        "f1_mean": round(statistics.fmean(s[2] for s in scores), 4),
        "pages_with_chrome": len(chrome),
        "no_article": len(failed),
        "pages_per_second": round(len(pages) / seconds, 1),
        "site_rules": args.site_rules,
    }
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    else:
        for key, value in figures.items():
            print(f"{key:<20} {value}")
        for rel in chrome[:5]:
            print("chrome in", rel)


if __name__ == "__main__":
    main()
