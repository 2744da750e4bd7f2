"""Reading crawl output: finding the files, telling their formats apart, and
reading JSON Lines, JSON arrays and HTML pages (tables and web archives
have modules of their own: ``indexer.tables``, ``indexer.warc``).

Every reader yields what it found with its location (``file:line``, a
page's path, or a web archive record's ``file@offset``) so that a bad item
can be reported precisely and skipped while everything else is indexed:

- ``RawRecord``: an item to index (a dict of whatever fields the crawler
  wrote; ``indexer.mapping`` turns its names into ours);
- ``BadRecord``: input that could not be read. A run that must know the
  whole crawl (``--prune``, ``--rebuild``) refuses when there is any, since
  what it could not read is not gone;
- ``SeenRecord``: a page that is still there but not stored again (a web
  archive's revisit record), so ``--prune`` keeps it;
- ``SkippedRecord``: a record that is no article (a WARC request, an image,
  a 404), counted in the summary.

Nothing is silently ignored: a path named on the command line must be of a
known format, and files of unknown formats inside a folder are counted by
extension for the summary.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import io
import json
import lzma
import os
import re
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

#: Compression suffixes, and how each is opened.
_COMPRESSION = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
#: File endings of each format (before any compression suffix).
FORMATS_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".jl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".xlsx": "xlsx",
    ".warc": "warc",
    ".arc": "warc",
    ".html": "html",
    ".htm": "html",
}
#: Formats that may come compressed (web archives are read compressed by
#: warcio itself; a workbook is a zip already; a page is read whole).
_COMPRESSIBLE = {"jsonl", "json", "csv", "tsv"}
#: A line (or JSON array item) longer than this is rejected unread (a
#: crawler fault, not an article).
MAX_LINE_BYTES = 32 * 1024 * 1024
#: Errors that mean a file could not be read further.
READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, UnicodeDecodeError)
#: What bytes a decoder could not read become (``errors="surrogateescape"``).
NOT_DECODED = re.compile("[\udc80-\udcff]")

OnBytes = Callable[[int], None] | None


class SourceError(Exception):
    """A path that cannot be read at all (missing, of an unknown format, or
    holding no crawl file)."""


@dataclass(frozen=True)
class RawRecord:
    location: str
    data: Any
    encoding: str | None = None


@dataclass(frozen=True)
class BadRecord:
    """Input that could not be read. Unless the id it was for is known, a
    run that must see the whole crawl refuses to go on."""

    location: str
    reason: str
    id: str | None = None


@dataclass(frozen=True)
class SeenRecord:
    """A page the crawl saw unchanged without storing it again."""

    location: str
    url: str


@dataclass(frozen=True)
class SkippedRecord:
    """A record that holds no article; counted by reason."""

    location: str
    reason: str


Item = RawRecord | BadRecord | SeenRecord | SkippedRecord


@dataclass(frozen=True)
class CrawlFile:
    """A file to read, its format, and the path named on the command line
    that it was found under (its relative path is taken from there)."""

    path: Path
    root: Path
    format: str
    named: str = ""

    @property
    def is_stdin(self) -> bool:
        return str(self.path) == "-"

    @property
    def root_name(self) -> str:
        """The name of the folder the file was found under (its site, for
        a page lying directly in it)."""
        return self.root.resolve().name if not self.is_stdin else ""

    @property
    def relative(self) -> str:
        try:
            return self.path.relative_to(self.root).as_posix()
        except ValueError:
            return self.path.name


@dataclass
class Discovery:
    """What the named paths hold: the crawl files in a stable order, files
    of unknown formats by extension, and folders that could not be listed."""

    files: list[CrawlFile] = field(default_factory=list)
    unknown: Counter = field(default_factory=Counter)
    unreadable: list[BadRecord] = field(default_factory=list)
    named: list[str] = field(default_factory=list)


def _suffix_format(name: str) -> str | None:
    """The format a file name says, compressed or not."""
    lower = name.lower()
    for comp in _COMPRESSION:
        if lower.endswith(comp):
            stem = lower[: -len(comp)]
            fmt = FORMATS_BY_SUFFIX.get(os.path.splitext(stem)[1])
            # Web archives are written gzipped record by record; warcio reads them.
            if fmt == "warc" and comp == ".gz":
                return fmt
            return fmt if fmt in _COMPRESSIBLE else None
    return FORMATS_BY_SUFFIX.get(os.path.splitext(lower)[1])


def _sniff(path: Path, named: bool) -> str | None:
    """The format a file's first bytes say, where that is cheap and sure:
    a web archive (plain or gzipped) always; for a file named on the
    command line also JSON and HTML."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
            if head.startswith(b"\x1f\x8b"):
                fh.seek(0)
                try:
                    with gzip.open(fh) as gz:
                        head = gz.read(512)
                except READ_ERRORS:
                    return None
    except OSError:
        return None
    if head.startswith((b"WARC/", b"filedesc://")):
        return "warc"
    if not named:
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        return "jsonl"
    if text[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "html"
    return None


def file_format(path: Path, named: bool = False) -> str | None:
    """The format of one file: by its name, else by its first bytes."""
    return _suffix_format(path.name) or _sniff(path, named)


def _extension(name: str) -> str:
    parts = name.lower().split(".")
    if len(parts) == 1:
        return "(none)"
    if len(parts) > 2 and "." + parts[-1] in _COMPRESSION:
        return "." + ".".join(parts[-2:])
    return "." + parts[-1]


def find_files(paths: Iterable[str | os.PathLike[str]]) -> Discovery:
    """The crawl files named by ``paths``: files as given, folders searched
    recursively, ``-`` for standard input (JSON Lines, a JSON array or a
    web archive). A named path that is missing, of an unknown format or
    holding no crawl file at all is a ``SourceError``: nothing is indexed
    from a command line that names something it cannot read."""
    found = Discovery()
    for raw in paths:
        name = str(raw)
        found.named.append(name)
        if name == "-":
            found.files.append(CrawlFile(Path("-"), Path("."), "stdin", name))
            continue
        path = Path(raw)
        if path.is_dir():
            before = len(found.files)
            unknown_before = sum(found.unknown.values())
            _walk(path, name, found)
            if len(found.files) == before and not any(b.location.startswith(str(path)) for b in found.unreadable):
                unknown = sum(found.unknown.values()) - unknown_before
                what = f" ({unknown} of unknown formats)" if unknown else ""
                raise SourceError(f"{path}: no crawl file in this folder{what}; {_KNOWN}")
        elif path.is_file():
            fmt = file_format(path, named=True)
            if fmt is None:
                raise SourceError(f"{path}: unknown format; {_KNOWN}")
            found.files.append(CrawlFile(path, path.parent, fmt, name))
        elif os.path.lexists(path):
            raise SourceError(f"{path}: not a file or folder that can be read")
        else:
            raise SourceError(f"{path}: no such file or folder")
    return found


_KNOWN = (
    "known formats are JSON Lines (.jsonl .jl .ndjson), JSON (.json), CSV/TSV (.csv .tsv), Excel (.xlsx), "
    "web archives (.warc .warc.gz .arc .arc.gz) and HTML pages (.html .htm); JSON and tables may be "
    "compressed (.gz .bz2 .xz)"
)


def _walk(folder: Path, named: str, found: Discovery) -> None:
    def unreadable(err: OSError) -> None:
        found.unreadable.append(BadRecord(str(err.filename or folder), f"cannot read folder: {err.strerror or err}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath, filename)
            if not path.is_file():
                # A link to nothing, a socket, a pipe: what was meant to be
                # here cannot be read.
                reason = "a link to nothing" if not os.path.exists(path) else "not a regular file"
                found.unreadable.append(BadRecord(str(path), f"cannot read: {reason}"))
                continue
            fmt = file_format(path)
            if fmt is None:
                found.unknown[_extension(filename)] += 1
            else:
                found.files.append(CrawlFile(path, folder, fmt, named))


def read_file(crawl_file: CrawlFile, on_bytes: OnBytes = None) -> Iterator[Item]:
    """The items of one crawl file, whatever its format."""
    fmt = crawl_file.format
    if fmt == "stdin":
        yield from _read_stdin(on_bytes)
    elif fmt == "html":
        yield read_page(crawl_file, on_bytes)
    elif fmt == "warc":
        from indexer.warc import read_warc

        yield from read_warc(crawl_file.path, on_bytes)
    elif fmt in ("csv", "tsv", "xlsx"):
        from indexer.tables import read_table

        yield from read_table(crawl_file.path, fmt, on_bytes)
    else:
        yield from _read_json_file(crawl_file.path, fmt, on_bytes)


def open_compressed(path: Path) -> IO[bytes]:
    """A binary stream of the file's content, decompressed by its suffix."""
    opener = _COMPRESSION.get(os.path.splitext(path.name.lower())[1], open)
    return opener(path, "rb")


def _read_json_file(path: Path, fmt: str, on_bytes: OnBytes) -> Iterator[Item]:
    try:
        fh = open_compressed(path)
    except OSError as err:
        yield BadRecord(str(path), f"cannot open: {err.strerror or err}")
        return
    with fh:
        yield from read_json_stream(fh, str(path), fmt, on_bytes)


def read_json_stream(fh: IO[bytes], name: str, fmt: str, on_bytes: OnBytes = None) -> Iterator[Item]:
    """JSON Lines, or (for ``json``) a JSON array streamed item by item; a
    ``.json`` file that does not start with ``[`` is read as JSON Lines."""
    if fmt == "json":
        reader = fh if isinstance(fh, io.BufferedReader) else io.BufferedReader(fh)
        try:
            head = reader.peek(4096)[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
        except READ_ERRORS as err:
            yield BadRecord(f"{name}:1", f"cannot read: {_reason(err)}")
            return
        if head.startswith(b"["):
            yield from read_json_array(reader, name, on_bytes)
            return
        fh = reader
    yield from read_json_lines(fh, name, on_bytes)


def _read_stdin(on_bytes: OnBytes) -> Iterator[Item]:
    stream = sys.stdin.buffer
    reader = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream)
    head = reader.peek(8)
    if head.startswith((b"WARC/", b"\x1f\x8b")):
        from indexer.warc import read_warc_stream

        yield from read_warc_stream(reader, "<stdin>", on_bytes)
    else:
        yield from read_json_stream(reader, "<stdin>", "json", on_bytes)


def read_page(crawl_file: CrawlFile, on_bytes: OnBytes = None) -> RawRecord | BadRecord:
    from indexer.html import MAX_HTML_BYTES, decode

    location = str(crawl_file.path)
    try:
        stat = crawl_file.path.stat()
        if stat.st_size > MAX_HTML_BYTES:
            return BadRecord(location, f"page larger than {MAX_HTML_BYTES // 1_048_576} MB")
        raw = crawl_file.path.read_bytes()
    except OSError as err:
        return BadRecord(location, f"cannot read: {err.strerror or err}")
    if on_bytes:
        on_bytes(len(raw))
    text, encoding = decode(raw)
    data = {"html": text, "path": crawl_file.relative, "_folder": crawl_file.root_name, "crawled": _mtime(stat)}
    return RawRecord(location, data, encoding)


def _mtime(stat: os.stat_result) -> str:
    """A file's modification time: when the crawler saved the page."""
    return dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).isoformat(timespec="seconds")


def _reason(err: BaseException) -> str:
    if isinstance(err, UnicodeDecodeError):
        return f"not valid UTF-8 (byte {err.start})"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def read_json_lines(fh: IO[bytes], name: str, on_bytes: OnBytes = None) -> Iterator[Item]:
    """Every line of a JSON Lines stream as a parsed record or a rejection."""
    lineno = 0
    while True:
        try:
            line = fh.readline(MAX_LINE_BYTES + 1)
        except READ_ERRORS as err:
            yield BadRecord(f"{name}:{lineno + 1}", f"cannot read further: {_reason(err)}")
            return
        if not line:
            return
        lineno += 1
        if on_bytes:
            on_bytes(len(line))
        location = f"{name}:{lineno}"
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            # Skip the rest of the over-long line.
            try:
                while line and not line.endswith(b"\n"):
                    line = fh.readline(MAX_LINE_BYTES)
                    if on_bytes:
                        on_bytes(len(line))
            except READ_ERRORS as err:
                yield BadRecord(location, f"cannot read further: {_reason(err)}")
                return
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
        yield _parse(location, text)


def _parse(location: str, text: str) -> RawRecord | BadRecord:
    try:
        return RawRecord(location, json.loads(text))
    except json.JSONDecodeError as err:
        return BadRecord(location, f"invalid JSON: {err.msg} (column {err.colno})")
    except RecursionError:
        return BadRecord(location, "invalid JSON: nested too deeply")


_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"


def read_json_array(fh: IO[bytes], name: str, on_bytes: OnBytes = None, chunk: int = 1 << 20) -> Iterator[Item]:
    """The items of a JSON array (Scrapy's ``-o items.json``), decoded one at
    a time from a growing window of the file, so that a large export is
    never held whole. An item that does not parse, is not an object, or
    holds bytes that are not UTF-8, is reported and skipped: reading goes
    on at the next item, found as the next object that starts a line
    (Scrapy writes one a line) or follows ``},``. Where no item follows,
    the rest is reported unread."""
    # Bytes that are not UTF-8 decode to lone surrogates, found in the
    # item's text (a surrogate escaped in JSON is text, not one of these).
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape")
    buf = ""
    pos = 0
    line = 1
    eof = False

    def more() -> bool:
        nonlocal buf, pos, eof, chunk, line
        if eof:
            return False
        data = text.read(chunk)
        if on_bytes:
            on_bytes(len(data))
        chunk = min(chunk * 2, MAX_LINE_BYTES)
        if not data:
            eof = True
            return False
        line += buf.count("\n", 0, pos)
        buf = buf[pos:] + data
        pos = 0
        return True

    def skip_space() -> str:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in _WHITESPACE:
                pos += 1
            if pos < len(buf) or not more():
                return buf[pos] if pos < len(buf) else ""

    def here() -> str:
        return f"{name}:{line + buf.count(chr(10), 0, pos)}"

    def next_item() -> bool:
        """Move to the next item after a bad one; False if there is none
        (before the window holds more than ``MAX_LINE_BYTES`` past it)."""
        nonlocal pos
        while True:
            found = _NEXT_ITEM_RE.search(buf, pos + 1)
            if found:
                pos = found.end() - 1
                return True
            if len(buf) - pos > MAX_LINE_BYTES or not more():
                return False

    def skipped(problem: str, here_too: bool = False) -> tuple[BadRecord, bool]:
        """The report of what is wrong here, and whether a next item was
        found to go on at (``here_too``: one may start right here)."""
        location = here()
        if (here_too and buf[pos : pos + 1] == "{") or next_item():
            return BadRecord(location, f"{problem}; skipped to the next item"), True
        return BadRecord(location, f"{problem}; the rest is unread"), False

    try:
        if skip_space() != "[":
            yield BadRecord(here(), "invalid JSON: not an array")
            return
        pos += 1
        expect_item = True
        while True:
            ch = skip_space()
            if ch == "]":
                pos += 1
                if skip_space() == "":
                    return
                # More after the end: a damaged byte closed the array early.
                report, found = skipped("invalid JSON: ']' before the end of the file", here_too=True)
                yield report
                if not found:
                    return
                expect_item = True
                continue
            if ch == "":
                yield BadRecord(here(), "cannot read further: the array is not closed (truncated file?)")
                return
            if expect_item is False:
                if ch != ",":
                    report, found = skipped(f"invalid JSON: expected ',' or ']', found {ch!r}")
                    yield report
                    if not found:
                        return
                    expect_item = True
                    continue
                pos += 1
                expect_item = True
                continue
            while True:
                try:
                    value, end = _DECODER.raw_decode(buf, pos)
                except json.JSONDecodeError as err:
                    problem = f"invalid JSON: {err.msg}"
                except RecursionError:
                    problem = "invalid JSON: nested too deeply"
                    break  # more of the file would not change that
                else:
                    if end >= len(buf) and more():
                        continue  # a number or literal cut at the window's end
                    if not isinstance(value, dict):
                        # Not a record; a damaged byte may have opened a
                        # list or string that took in the items after it.
                        problem = "invalid JSON: an item that is not an object"
                    elif NOT_DECODED.search(buf, pos, end):
                        problem = "not valid UTF-8"
                    else:
                        problem = None
                    break
                if len(buf) - pos <= MAX_LINE_BYTES and more():
                    continue  # perhaps only cut at the window's end
                if len(buf) - pos > MAX_LINE_BYTES:
                    problem = f"an item larger than {MAX_LINE_BYTES} bytes"
                break
            if problem is None or problem == "not valid UTF-8":
                yield RawRecord(here(), value) if problem is None else BadRecord(here(), problem)
                pos = end
                expect_item = False
            else:
                report, found = skipped(problem)
                yield report
                if not found:
                    return
    except READ_ERRORS as err:
        yield BadRecord(here(), f"cannot read further: {_reason(err)}")


#: Where an array item after a bad one starts: an object at the start of a
#: line, or after the end of the object before it.
_NEXT_ITEM_RE = re.compile(r"\n[ \t]*\{|\}[ \t\r\n]*,[ \t\r\n]*\{")


def total_bytes(files: Iterable[CrawlFile]) -> int:
    total = 0
    for f in files:
        if f.is_stdin:
            continue
        try:
            total += f.path.stat().st_size
        except OSError:
            pass
    return total
