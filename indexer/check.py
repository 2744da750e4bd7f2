"""Verifying an index: what `search check` runs.

Opens the live generation and every segment in it, checks each segment
file's size against its header, reads every live document's stored fields
and id, looks each id up in the inverted index, and reads every posting
list of every term. Anything that fails is damage, named by where it is.
Files that no table of contents refers to (left by an interrupted run) and
generations that are neither live nor the one kept after a rebuild are
leftovers: reported, and removed with ``clean=True`` (under the writer
lock, so never a running writer's files), but not damage. ``clean=True``
also makes the newest complete generation live again when ``CURRENT`` is
missing.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index

from indexer.known import known_file
from indexer.merging import retired_file, retired_segments
from indexer.store import (
    CURRENT,
    LOCK_FILE,
    WATCH_STATE_PREFIX,
    WATCH_STATE_SUFFIX,
    IndexDamaged,
    IndexMissing,
    IndexStore,
    segment_files,
)

_TOC_RE = re.compile(r"^_MAIN_(\d+)\.toc$")


@dataclass
class CheckReport:
    index: str
    generation: str | None = None
    segments: int = 0
    documents: int = 0
    deleted: int = 0
    terms: int = 0
    damage: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    repaired: str | None = None

    @property
    def ok(self) -> bool:
        return not self.damage

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def check_index(root: str | os.PathLike[str], clean: bool = False, lock_timeout: float = 60) -> CheckReport:
    store = IndexStore(root)
    if not clean:
        return _check(store)
    with store.write_lock(lock_timeout):
        repaired = store.repair_current() if store.current_name() is None and store.generations() else None
        report = _check(store)
        report.repaired = repaired
        for name in report.leftovers:
            target = store.root / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
            report.removed.append(name)
    return report


def _check(store: IndexStore) -> CheckReport:
    report = CheckReport(index=str(store.root))
    if store.current_name() is None and store.generations():
        report.damage.append(
            f"{CURRENT} is missing (generations: {', '.join(store.generations())}); "
            f"'search check --clean' or the next 'search index' makes the newest complete one live"
        )
        return report
    try:
        path = store.current_dir()
    except (IndexMissing, IndexDamaged) as err:
        report.damage.append(str(err))
        return report
    report.generation = path.name
    try:
        ix = whoosh_index.open_dir(path)
        segment_files(ix)
        _check_segments(ix, report)
    except IndexDamaged as err:
        report.damage.append(str(err))
        return report
    except Exception as err:  # noqa: BLE001 - any failure to read is what this reports
        report.damage.append(f"cannot read {path.name}: {type(err).__name__}: {err}")
        return report
    report.leftovers.extend(_leftover_files(path, ix))
    report.leftovers.extend(_leftover_generations(store))
    return report


def _check_segments(ix, report: CheckReport) -> None:
    segments = ix._segments()  # the TOC's list; there is no public accessor
    report.segments = len(segments)
    with ix.searcher() as searcher:
        for number, (reader, offset) in enumerate(searcher.reader().leaf_readers()):
            seg = f"segment {number + 1}"
            ids = reader.column_reader("id")
            for docnum in range(reader.doc_count_all()):
                if reader.is_deleted(docnum):
                    report.deleted += 1
                    continue
                stored = reader.stored_fields(docnum)
                doc_id = stored.get("id")
                column_id = ids[docnum]
                column_id = column_id.decode("utf-8") if isinstance(column_id, bytes) else column_id
                if not doc_id or doc_id != column_id:
                    report.damage.append(
                        f"{seg}: document {docnum + offset} has id {doc_id!r} but column {column_id!r}"
                    )
                    continue
                if ("id", doc_id) not in reader:
                    report.damage.append(f"{seg}: id {doc_id!r} is not in the inverted index")
                    continue
                report.documents += 1
            for fieldname in reader.indexed_field_names():
                for term in reader.lexicon(fieldname):
                    report.terms += 1
                    try:
                        for _docnum in reader.postings(fieldname, term).all_ids():
                            pass
                    except Exception as err:  # noqa: BLE001 - a posting list that cannot be read is damage
                        shown = term.decode("utf-8", "replace") if isinstance(term, bytes) else term
                        report.damage.append(
                            f"{seg}: the postings of {fieldname}:{shown!r} cannot be read ({type(err).__name__}: {err})"
                        )


def _leftover_files(path: Path, ix) -> list[str]:
    """Files in the live generation that its newest TOC does not use (the
    segments its commit merged away are kept for searchers until the next
    commit, and its table of the documents is kept beside it: neither is a
    leftover)."""
    used = set()
    tocs = sorted((int(m[1]), name) for name in os.listdir(path) if (m := _TOC_RE.match(name)))
    segids = {seg.segment_id() for seg in ix._segments()}
    if tocs:
        generation, toc = tocs[-1]
        used.add(toc)
        used.add(retired_file(ix.indexname, generation))
        used.add(known_file(ix.indexname, generation))
        segids |= retired_segments(path, ix.indexname, generation)
    used.update(name for name in os.listdir(path) if name.split(".", 1)[0] in segids)
    used.add(f"{ix.indexname}_WRITELOCK")
    return [f"{path.name}/{name}" for name in sorted(os.listdir(path)) if name not in used]


def _leftover_generations(store: IndexStore) -> list[str]:
    """Generations that are not live: one is kept after a rebuild (the
    newest of them); older ones, and unfinished ones, are leftovers."""
    live = store.current_name()
    others = [g for g in store.generations() if g != live]
    leftovers = []
    for name in others:
        if not whoosh_index.exists_in(store.root / name) or live is None or name > live:
            leftovers.append(name)  # unfinished rebuild
    finished_older = [g for g in others if g not in leftovers]
    leftovers.extend(finished_older[:-1])
    extra = {p.name for p in store.root.iterdir() if p.is_file() and not _is_watch_state(p.name)} - {CURRENT, LOCK_FILE}
    leftovers.extend(sorted(extra))
    return leftovers


def _is_watch_state(name: str) -> bool:
    """The files ``index --watch`` remembers a folder's indexed files in."""
    return name.startswith(WATCH_STATE_PREFIX) and name.endswith(WATCH_STATE_SUFFIX)
