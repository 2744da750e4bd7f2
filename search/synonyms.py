"""Query-time synonyms: ``亚马逊, Amazon`` in a file, one group a line.

A query word (or a whole query clause) that belongs to a group also matches
the other members, each ranked as that word would be. Synonyms change no
index, so editing the file takes effect at the next query: the file is read
again whenever its modification time changes.

File format (UTF-8): one group per line, members separated by commas
(ASCII or full-width); blank lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from indexer.analysis import normalize

_SEPARATORS = re.compile(r"[,，、]")


class SynonymsError(ValueError):
    """A synonyms file that cannot be read."""


def parse_synonyms(text: str) -> dict[str, tuple[str, ...]]:
    """normalized member -> the other members (as written)."""
    table: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        members = [m.strip() for m in _SEPARATORS.split(line) if m.strip()]
        for member in members:
            key = " ".join(normalize(member).split())
            others = tuple(m for m in members if " ".join(normalize(m).split()) != key)
            if others:
                table[key] = tuple(dict.fromkeys(table.get(key, ()) + others))
    return table


class Synonyms:
    """The synonym table of a file, reloaded when the file changes."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self._mtime: float | None = None
        self._table: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def table(self) -> dict[str, tuple[str, ...]]:
        if self.path is None:
            return {}
        try:
            mtime = self.path.stat().st_mtime
        except OSError as err:
            raise SynonymsError(f"synonyms file {self.path}: {err.strerror or err}") from None
        with self._lock:
            if mtime != self._mtime:
                try:
                    self._table = parse_synonyms(self.path.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError) as err:
                    raise SynonymsError(f"synonyms file {self.path}: {err}") from None
                self._mtime = mtime
            return self._table

    def version(self) -> float | None:
        """Changes when the file does (part of cached answers' keys)."""
        if self.path is None:
            return None
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def alternatives(self, text: str) -> tuple[str, ...]:
        """Other members of the group ``text`` belongs to (none if it is in none)."""
        return self.table().get(" ".join(normalize(text).split()), ())
