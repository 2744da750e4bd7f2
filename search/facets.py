"""Facet counts (tags, sources, sites, years) over every document a query matched.

Counted while the query runs, from per-document columns, so they respect the
query's filters and exclusions and never decode stored fields. Tags and
sources that differ only in script or width are one facet, shown in their
most common spelling.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from whoosh import sorting
from whoosh.util.times import long_to_datetime

from indexer.analysis import normalize_keyword
from indexer.schema import VALUE_SEPARATOR

#: Most values shown per facet.
MAX_FACET_VALUES = 20


class _ColumnValues(sorting.Categorizer):
    allow_overlap = True

    def __init__(self, column: str, split: bool) -> None:
        self.column = column
        self.split = split
        self._reader = None

    def set_searcher(self, segment_searcher, docoffset):
        reader = segment_searcher.reader()
        present = self.column in reader.schema and reader.has_column(self.column)
        self._reader = reader.column_reader(self.column) if present else None

    def keys_for(self, matcher, docnum):
        raw = self._reader[docnum] if self._reader is not None else None
        if not raw:
            return ()
        text = raw.decode("utf-8")
        return text.split(VALUE_SEPARATOR) if self.split else (text,)

    def key_for(self, matcher, docnum):
        keys = self.keys_for(matcher, docnum)
        return keys[0] if keys else None


class _Years(_ColumnValues):
    def __init__(self) -> None:
        super().__init__("sort_date", split=False)

    def keys_for(self, matcher, docnum):
        value = self._reader[docnum] if self._reader is not None else 0
        return (long_to_datetime(value).year,) if value else ()


class ColumnFacet(sorting.FacetType):
    """Groups documents by the value(s) held in a column."""

    def __init__(self, column: str, split: bool = False) -> None:
        self.column = column
        self.split = split
        self.maptype = sorting.Count
        self.allow_overlap = True

    def categorizer(self, global_searcher):
        return _ColumnValues(self.column, self.split)


class YearFacet(sorting.FacetType):
    def __init__(self) -> None:
        self.maptype = sorting.Count
        self.allow_overlap = True

    def categorizer(self, global_searcher):
        return _Years()


class NewestFirst(sorting.FieldFacet):
    """Dated documents newest first, undated ones last, from the
    ``sort_date`` column of each segment. Whoosh's ``FieldFacet`` sorts by
    the field's postings when no segment has the column (an index where
    nothing is dated), and ``sort_date`` has no postings."""

    def __init__(self) -> None:
        super().__init__("sort_date", reverse=True)

    def categorizer(self, global_searcher):
        return sorting.ColumnCategorizer(global_searcher, "sort_date", reverse=True)


def facet_types() -> dict[str, sorting.FacetType]:
    return {
        "tags": ColumnFacet("facet_tags", split=True),
        "sources": ColumnFacet("facet_source"),
        "sites": ColumnFacet("facet_site"),
        "years": YearFacet(),
    }


def facet_counts(results) -> dict[str, list[dict[str, Any]]]:
    """The facets of a Whoosh result set searched with ``facet_types()``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in ("tags", "sources", "sites"):
        merged: dict[str, Counter] = defaultdict(Counter)
        for value, count in results.groups(name).items():
            if value is None:
                continue
            merged[normalize_keyword(value)][value] += count
        rows = [
            {"value": spellings.most_common(1)[0][0], "count": sum(spellings.values())}
            for key, spellings in merged.items()
            if key
        ]
        rows.sort(key=lambda r: (-r["count"], r["value"]))
        out[name] = rows[:MAX_FACET_VALUES]
    years = [{"value": y, "count": c} for y, c in results.groups("years").items() if y is not None]
    years.sort(key=lambda r: -r["value"])
    out["years"] = years[:MAX_FACET_VALUES]
    return out
