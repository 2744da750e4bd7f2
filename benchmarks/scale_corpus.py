"""Build a large corpus for `search bench` scaling runs from the shared corpora.

The full poetry collection is not shipped, so the 200,000-document corpus is
made from the four shipped collections (poetry-20k, manpages,
insuranceqa-answers, articles-html: 51,521 documents), written out in
rounds until the target count is reached:

* round 0 is every document as it is;
* in round k > 0 each document becomes a *varied copy*: a new id
  (``<id>~k``), its title with `` (k)``, and a body made of its own lines in
  a shuffled order interleaved with the lines of another document of the
  same collection (chosen by a seeded generator). A varied copy shares
  about half its text with two originals, so it is neither an exact nor a
  near duplicate (the indexer would drop those) and the index grows the way
  a real crawl does: new documents made of the same vocabulary.

Round 0 comes first, so the known-item queries of the dev splits still have
their judged documents in the corpus.

    python benchmarks/scale_corpus.py --shared ../shared/corpora --docs 200000 --out /tmp/scale-200k.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

COLLECTIONS = ("poetry-20k.jsonl", "manpages.jsonl", "insuranceqa-answers.jsonl", "articles-html.jsonl")


def _load(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def varied_copy(doc: dict, other: dict, round_no: int, rng: random.Random) -> dict:
    """A new document from ``doc`` and ``other`` (see the module docstring)."""
    own = [line for line in (doc.get("body") or "").split("\n") if line.strip()]
    mixed = [line for line in (other.get("body") or "").split("\n") if line.strip()]
    rng.shuffle(own)
    body: list[str] = []
    for i in range(max(len(own), len(mixed))):
        if i < len(own):
            body.append(own[i])
        if i < len(mixed):
            body.append(mixed[i])
    copy = dict(doc)
    copy["id"] = f"{doc['id']}~{round_no}"
    if copy.get("url"):
        copy["url"] = f"{copy['url']}#copy-{round_no}"
    copy["title"] = f"{doc.get('title') or ''} ({round_no})".strip()
    copy["body"] = "\n".join(body)
    return copy


def scale_corpus(shared: Path, docs: int, seed: int = 0) -> Iterator[dict]:
    collections = [_load(shared / name) for name in COLLECTIONS]
    rng = random.Random(seed)
    written = 0
    round_no = 0
    while written < docs:
        for collection in collections:
            for doc in collection:
                if written >= docs:
                    return
                if round_no == 0:
                    yield doc
                else:
                    yield varied_copy(doc, collection[rng.randrange(len(collection))], round_no, rng)
                written += 1
        round_no += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpora")
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    missing = [name for name in COLLECTIONS if not (args.shared / name).exists()]
    if missing:
        print(f"missing under {args.shared}: {', '.join(missing)}", file=sys.stderr)
        return 2
    count = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for doc in scale_corpus(args.shared, args.docs, args.seed):
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
            count += 1
    print(f"{count} documents, {args.out.stat().st_size / 1_048_576:.1f} MB -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
