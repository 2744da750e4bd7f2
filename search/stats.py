"""The statistics of a whole sharded corpus, for scoring on each shard.

BM25F weighs a term by how many documents hold it and a field's length by
the average; a shard that used its own figures would rank its documents on
its own scale, and merged results would depend on how the documents fell
into shards. Elasticsearch's ``dfs_query_then_fetch`` asks every shard for
the query's term statistics first and scores with their sums; so does a
sharded index here. ``shard_statistics`` is a shard's part, ``CorpusStats``
adds the parts up, and ``GlobalSearcher`` is a shard's searcher that
answers the scorers' questions from the sums. The figures are integers
added in the same way the single index adds its segments', so the scores
are the very floats a single index gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from whoosh.searching import Searcher

from search.readers import CommitSearcher
from search.rescore import unit_gram_frequency


@dataclass
class CorpusStats:
    """Document count (deleted ones included, as Whoosh counts them),
    total field lengths, and the document frequencies of a query's terms
    and of a question's characters."""

    doc_count_all: int = 0
    field_lengths: dict[str, int] = field(default_factory=dict)
    terms: dict[tuple[str, bytes], int] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)

    @classmethod
    def combine(cls, parts: Iterable[CorpusStats]) -> CorpusStats:
        out = cls()
        for part in parts:
            out.doc_count_all += part.doc_count_all
            for table, more in (
                (out.field_lengths, part.field_lengths),
                (out.terms, part.terms),
                (out.units, part.units),
            ):
                for key, value in more.items():
                    table[key] = table.get(key, 0) + value
        return out


def shard_statistics(searcher: Searcher, queries: Iterable, units: Iterable[str] = ()) -> CorpusStats:
    """This shard's part of the statistics of ``queries`` (Whoosh queries)
    and of a question's ``units``: every term they may score here (a
    prefix expanded segment by segment, as its matchers expand it), with
    its document frequency, and every scorable field's total length."""
    reader = searcher.reader()
    leaves = [leaf for leaf, _offset in reader.leaf_readers()] or [reader]
    terms: dict[tuple[str, bytes], int] = {}
    schema = reader.schema
    # Not Whoosh's ``existing_terms``: its loop variable takes the place of
    # its ``fieldname`` argument, so it skips every term after the first
    # that is not in the first one's field.
    for q in queries:
        if q is None:
            continue
        for part in q.leaves():
            for leaf in leaves:
                for name, text in part.expanded_terms(leaf, phrases=True):
                    if name not in schema:
                        continue
                    try:
                        key = (name, schema[name].to_bytes(text))
                    except ValueError:
                        continue
                    if key not in terms and key in leaf:
                        terms[key] = reader.doc_frequency(*key)
    lengths = {name: reader.field_length(name) for name, f in reader.schema.items() if f.scorable}
    return CorpusStats(
        doc_count_all=reader.doc_count_all(),
        field_lengths=lengths,
        terms=terms,
        units={unit: unit_gram_frequency(searcher, unit) for unit in units},
    )


class GlobalSearcher(CommitSearcher):
    """A shard's searcher that scores with the whole corpus's statistics
    (``stats``); its segments' searchers ask it, as Whoosh's do their
    parent. A term missing from ``stats`` is counted in ``misses`` and
    scored with this shard's figure (the statistics phase lists every term
    a query can score, so a miss is a defect a test catches)."""

    def __init__(self, reader, stats: CorpusStats | None = None, **kwargs) -> None:
        super().__init__(reader, **kwargs)
        self.stats = stats
        self.misses: set[tuple[str, bytes]] = set()
        if stats is not None and self.parent is None:
            self._doccount = stats.doc_count_all
            self.doc_frequency = self._doc_frequency

    def _doc_frequency(self, fieldname: str, text) -> int:
        btext = text if isinstance(text, bytes) else self.schema[fieldname].to_bytes(text)
        key = (fieldname, btext)
        found = self.stats.terms.get(key)
        if found is None:
            self.misses.add(key)
            return self.ixreader.doc_frequency(fieldname, btext)
        return found

    def field_length(self, fieldname: str) -> int:
        if self.parent is not None:
            return self.get_parent().field_length(fieldname)
        if self.stats is not None:
            return self.stats.field_lengths.get(fieldname, 0)
        return self.reader().field_length(fieldname)
