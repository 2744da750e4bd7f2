"""Reading crawl output: JSON Lines files (plain or gzip), HTML pages, and
folders of them (searched recursively).

Each record comes out with its location (``file:line``, or the page's path)
so that a bad one can be reported precisely and skipped while everything
else is indexed. An HTML page becomes a record ``{"html", "path"}`` whose
path is relative to the folder named on the command line (its id when the
page has no canonical URL).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: File endings read as JSON Lines.
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".json.gz")
#: File endings read as HTML pages.
HTML_SUFFIXES = (".html", ".htm")
#: A line longer than this is rejected unread (a crawler fault, not an article).
MAX_LINE_BYTES = 32 * 1024 * 1024


class SourceError(Exception):
    """A path that cannot be read at all (missing, or not a crawl file)."""


@dataclass(frozen=True)
class RawRecord:
    location: str
    data: Any
    encoding: str | None = None


@dataclass(frozen=True)
class CrawlFile:
    """A file to read, and the folder its relative path is taken from."""

    path: Path
    root: Path

    @property
    def is_html(self) -> bool:
        return self.path.name.lower().endswith(HTML_SUFFIXES)

    @property
    def relative(self) -> str:
        try:
            return self.path.relative_to(self.root).as_posix()
        except ValueError:
            return self.path.name


@dataclass(frozen=True)
class BadRecord:
    location: str
    reason: str


def find_files(paths: Iterable[str | os.PathLike[str]]) -> list[CrawlFile]:
    """The crawl files named by ``paths``: files as given, folders searched
    recursively for JSON Lines and HTML files, in a stable order."""
    found: list[CrawlFile] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                CrawlFile(p, path)
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.name.lower().endswith(JSONL_SUFFIXES + HTML_SUFFIXES)
            )
        elif path.is_file():
            found.append(CrawlFile(path, path.parent))
        else:
            raise SourceError(f"{path}: no such file or folder")
    return found


def read_file(crawl_file: CrawlFile, on_bytes=None) -> Iterator[RawRecord | BadRecord]:
    """The records of one crawl file, whatever its kind."""
    if crawl_file.is_html:
        yield read_page(crawl_file, on_bytes)
    else:
        yield from read_records(crawl_file.path, on_bytes)


def read_page(crawl_file: CrawlFile, on_bytes=None) -> RawRecord | BadRecord:
    from indexer.html import MAX_HTML_BYTES, decode

    location = str(crawl_file.path)
    try:
        size = crawl_file.path.stat().st_size
        if size > MAX_HTML_BYTES:
            return BadRecord(location, f"page larger than {MAX_HTML_BYTES // 1_048_576} MB")
        raw = crawl_file.path.read_bytes()
    except OSError as err:
        return BadRecord(location, f"cannot read: {err.strerror or err}")
    if on_bytes:
        on_bytes(len(raw))
    text, encoding = decode(raw)
    return RawRecord(location, {"html": text, "path": crawl_file.relative}, encoding)


def read_records(path: Path, on_bytes=None) -> Iterator[RawRecord | BadRecord]:
    """Yield every line of one JSON Lines file as a parsed record or a
    rejection. ``on_bytes(n)`` is told how many bytes each line took."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        fh = opener(path, "rb")
    except OSError as err:
        yield BadRecord(f"{path}", f"cannot open: {err.strerror or err}")
        return
    with fh:
        lineno = 0
        while True:
            try:
                line = fh.readline(MAX_LINE_BYTES + 1)
            except (OSError, EOFError, gzip.BadGzipFile) as err:
                yield BadRecord(f"{path}:{lineno + 1}", f"cannot read further: {err}")
                return
            if not line:
                return
            lineno += 1
            if on_bytes:
                on_bytes(len(line))
            location = f"{path}:{lineno}"
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                # Skip the rest of the over-long line.
                while line and not line.endswith(b"\n"):
                    line = fh.readline(MAX_LINE_BYTES)
                    if on_bytes:
                        on_bytes(len(line))
                yield BadRecord(location, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as err:
                yield BadRecord(location, f"not valid UTF-8 (byte {err.start})")
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                yield BadRecord(location, f"invalid JSON: {err.msg} (column {err.colno})")
                continue
            except RecursionError:
                yield BadRecord(location, "invalid JSON: nested too deeply")
                continue
            yield RawRecord(location, data)


def total_bytes(files: Iterable[CrawlFile]) -> int:
    return sum(f.path.stat().st_size for f in files)
