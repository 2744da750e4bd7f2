"""Facet counts (tags, sources, sites, years) over every document a query matched.

The collector notes which documents matched (``tally``); they are counted
afterwards against each segment's facet values, read from its columns once
and kept with the segment's reader (a segment never changes, so its values
serve every later commit too). Whoosh's ``groupedby`` asked a categorizer
per document and facet, decoding column bytes each time, and took the
query off the bulk scoring path: it cost a third of a serving worker's CPU.
The counts respect the query's filters and exclusions (only what was
collected is counted) and never decode stored fields. Tags and sources that
differ only in script or width are one facet, shown in their most common
spelling.
"""

from __future__ import annotations

import itertools
from array import array
from collections import Counter, defaultdict
from typing import Any

from whoosh import sorting
from whoosh.util.times import long_to_datetime

from indexer.analysis import normalize_keyword
from indexer.schema import VALUE_SEPARATOR

#: Most values shown per facet.
MAX_FACET_VALUES = 20


class NewestFirst(sorting.FieldFacet):
    """Dated documents newest first, undated ones last, from the
    ``sort_date`` column of each segment. Whoosh's ``FieldFacet`` sorts by
    the field's postings when no segment has the column (an index where
    nothing is dated), and ``sort_date`` has no postings."""

    def __init__(self) -> None:
        super().__init__("sort_date", reverse=True)

    def categorizer(self, global_searcher):
        return sorting.ColumnCategorizer(global_searcher, "sort_date", reverse=True)


#: Facet name -> (column, several values per document).
_COLUMNS = {"tags": ("facet_tags", True), "sources": ("facet_source", False), "sites": ("facet_site", False)}


class Tally:
    """The documents a collector took, per segment (by its offset)."""

    def __init__(self) -> None:
        self.by_offset: dict[int, list[int]] = defaultdict(list)

    def attach(self, collector) -> None:
        """Note every document ``collector`` (or the one it wraps) takes."""
        inner = collector
        while getattr(inner, "child", None) is not None:
            inner = inner.child
        collect = inner.collect
        by_offset = self.by_offset

        def noting(sub_docnum):
            by_offset[inner.offset].append(sub_docnum)
            return collect(sub_docnum)

        inner.collect = noting
        # TopScores takes a segment's scored matches in one step.
        inner.on_matches = lambda offset, ids: by_offset[offset].extend(ids)

    def counts(self, searcher) -> dict[str, Counter]:
        """Value -> documents, per facet."""
        out: dict[str, Counter] = {name: Counter() for name in (*_COLUMNS, "years")}
        for sub, offset in searcher.leaf_searchers():
            docs = self.by_offset.get(offset)
            if not docs:
                continue
            values = segment_facets(sub.reader())
            for name, (names, per_doc, several) in values.items():
                found = out[name]
                if several:
                    ids = Counter(itertools.chain.from_iterable(map(per_doc.__getitem__, docs)))
                else:
                    ids = Counter(map(per_doc.__getitem__, docs))
                for i, n in ids.items():
                    if i >= 0:
                        found[names[i]] += n
        return out


def segment_facets(reader) -> dict[str, tuple[list[Any], Any, bool]]:
    """Each facet's values in one segment: (the distinct values, each
    document's value number(s), several per document), kept by the reader.

    A serving worker builds this for every segment a commit adds, before
    the commit goes live. Each column is read in one piece and a value is
    decoded once however many documents share it: read document by
    document, this was most of a worker's CPU per commit."""
    cached = reader.__dict__.get("_zhsearch_facets")
    if cached is not None:
        return cached
    n = reader.doc_count_all()
    out: dict[str, tuple[list[Any], Any, bool]] = {}
    for name, (column, several) in _COLUMNS.items():
        number: dict[Any, int] = {}
        known: dict[bytes, tuple[int, ...]] = {b"": ()}
        per_doc: Any = [] if several else array("i", [-1]) * n
        for docnum, raw in enumerate(_column_values(reader, column, n)):
            ids = known.get(raw)
            if ids is None:
                keys = raw.decode("utf-8").split(VALUE_SEPARATOR)
                ids = known[raw] = tuple(number.setdefault(k, len(number)) for k in (keys if several else keys[:1]))
            if several:
                per_doc.append(ids)
            elif ids:
                per_doc[docnum] = ids[0]
        out[name] = (list(number), per_doc, several)
    out["years"] = _segment_years(reader, n)
    reader.__dict__["_zhsearch_facets"] = out
    return out


def _column_values(reader, column: str, n: int) -> list[bytes]:
    """Every document's raw value in a bytes column (b"" where it has none)."""
    if column not in reader.schema or not reader.has_column(column):
        return [b""] * n
    col = reader.column_reader(column, translate=False)
    lengths, offsets = getattr(col, "_lengths", None), getattr(col, "_offsets", None)
    if lengths is None or offsets is None or len(lengths) != n:
        return [col[docnum] or b"" for docnum in range(n)]  # not Whoosh's VarBytes layout
    end = max((o + ln for o, ln in zip(offsets, lengths, strict=True)), default=0)
    data = col._dbfile.get(col._basepos, end) if end else b""
    return [data[o : o + ln] if ln else b"" for o, ln in zip(offsets, lengths, strict=True)]


#: Microseconds in a day (``sort_date`` counts them, as Whoosh's datetimes do).
_DAY = 86_400 * 1_000_000


def _segment_years(reader, n: int) -> tuple[list[int], Any, bool]:
    """The years facet: each document's year number, from its date."""
    years: dict[int, int] = {}
    per_year = array("i", [-1]) * n
    if "sort_date" in reader.schema and reader.has_column("sort_date"):
        dates = reader.column_reader("sort_date", translate=False)
        by_day: dict[int, int] = {}
        for docnum in range(n):
            value = dates[docnum]
            if value:
                day = value // _DAY
                year = by_day.get(day)
                if year is None:
                    year = by_day[day] = years.setdefault(long_to_datetime(value).year, len(years))
                per_year[docnum] = year
    return list(years), per_year, False


def overview_counts(searcher) -> dict[str, Counter]:
    """``Tally.counts`` over every live document."""
    tally = Tally()
    for sub, offset in searcher.leaf_searchers():
        reader = sub.reader()
        deleted = reader.deleted_docs_set if reader.has_deletions() else ()
        tally.by_offset[offset] = [d for d in range(reader.doc_count_all()) if d not in deleted]
    return tally.counts(searcher)


def facet_counts(groups: dict[str, Counter]) -> dict[str, list[dict[str, Any]]]:
    """The facets shown, from ``Tally.counts``: values that differ only in
    script or width merged, at most ``MAX_FACET_VALUES`` each."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in ("tags", "sources", "sites"):
        merged: dict[str, Counter] = defaultdict(Counter)
        for value, count in groups[name].items():
            if value is None:
                continue
            merged[normalize_keyword(value)][value] += count
        # The most common spelling; between equally common ones the first in
        # code point order, not the first found (which would depend on how
        # the documents are laid out in segments or shards).
        rows = [
            {"value": min(spellings.items(), key=lambda kv: (-kv[1], kv[0]))[0], "count": sum(spellings.values())}
            for key, spellings in merged.items()
            if key
        ]
        rows.sort(key=lambda r: (-r["count"], r["value"]))
        out[name] = rows[:MAX_FACET_VALUES]
    years = [{"value": y, "count": c} for y, c in groups["years"].items() if y is not None]
    years.sort(key=lambda r: -r["value"])
    out["years"] = years[:MAX_FACET_VALUES]
    return out
