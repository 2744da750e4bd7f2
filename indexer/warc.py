"""Web archives (WARC and ARC, plain or gzipped) as crawl input, read with
warcio: the library behind pywb and Browsertrix's tooling, which copes with
the quirks of real crawlers' files (chunked bodies stored already
de-chunked, a ``Content-Encoding`` that is not there). FastWARC was
measured to abort on such files.

Each HTTP response with status 200 and an HTML content type becomes a page
record: its URL is ``WARC-Target-URI``, its crawl date ``WARC-Date``, and
the charset of the HTTP ``Content-Type`` header is passed to decoding
(GBK pages often declare it only there). A revisit record (what
``wget --warc-dedup`` and other deduplicating crawlers write for an
unchanged page) says the page is still there. Everything else (requests,
metadata, other content types, other statuses) is skipped and counted.
"""

from __future__ import annotations

import dataclasses
import email.utils
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import DecompressingBufferedReader
from warcio.exceptions import ArchiveLoadFailed

from indexer.html import MAX_HTML_BYTES, decode
from indexer.sources import READ_ERRORS, BadRecord, Item, OnBytes, RawRecord, SeenRecord, SkippedRecord

#: Content types read as pages.
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def read_warc(path: Path, on_bytes: OnBytes = None) -> Iterator[Item]:
    try:
        with open(path, "rb") as fh:
            yield from read_warc_stream(fh, str(path), on_bytes)
    except OSError as err:  # opening it; read errors are reported by the stream
        yield BadRecord(str(path), f"cannot open: {err.strerror or err}")


def read_warc_stream(fh: IO[bytes], name: str, on_bytes: OnBytes = None) -> Iterator[Item]:
    """The items of one web archive; ``name@offset`` locates each record.

    A damaged record (a gzip member that does not decompress, headers
    warcio cannot parse or without a length, a record cut short) is reported and skipped, and
    reading goes on at the next record found after it: one bad byte in a
    crawl of a million pages loses one page, where warcio stops at it and
    every record after it was lost."""
    seekable = fh.seekable()  # not a pipe
    start = fh.tell() if seekable else 0
    done = start
    while True:
        damage: list[tuple[int, int, str]] = []
        for item in _records(fh, name, start if seekable else None, damage):
            yield item
            if on_bytes and item.location:
                offset = int(item.location.rsplit("@", 1)[1])
                on_bytes(max(0, offset - done))
                done = max(done, offset)
        if not damage:
            return
        at, after, reason = damage[0]
        # (warcio's offsets go below zero in a file gzipped whole.)
        at, after = max(at, start), max(after, start)
        resume = _next_record(fh, after + 1) if seekable else None
        if resume is None:
            yield BadRecord(f"{name}@{at}", f"record not readable ({reason}); nothing readable after it")
            return
        yield BadRecord(f"{name}@{at}", f"record not readable ({reason}); reading goes on at offset {resume}")
        start = resume


def _records(fh: IO[bytes], name: str, start: int | None, damage: list[tuple[int, int, str]]) -> Iterator[Item]:
    """The items of the archive's records from ``start`` (None: where a
    pipe is) to its end or to the first damaged record. ``damage`` gets
    its offset, where to look for the next record from, and the reason.

    The look starts at the damaged record, or at the record before it if
    that one was not followed by a blank line (warcio's ``err_count``): its
    length was wrong, so it may have taken in the start of the next one."""
    if start is not None:
        fh.seek(start)
    records = ArchiveIterator(fh, arc2warc=True)
    # Damage inside a gzip member is an error here; warcio writes it to
    # stderr and drops the rest of the member, which loses what follows.
    records.reader = _StrictReader(records.fh, block_size=records.reader.block_size)
    at = records.offset
    suspect = None
    errors = 0
    try:
        for record in _parsed(records):
            if record.length is None:
                # Its end is unknown: warcio would read the rest of the
                # archive as its body.
                damage.append((at, at, "no Content-Length"))
                return
            item = _item(record)
            # warcio knows a record's offset only once its body was read.
            at = records.get_record_offset()
            if getattr(record.raw_stream, "limit", 0) > 0:
                damage.append((at, at, "the record ends before its length"))
                return
            suspect = at if records.err_count > errors else None
            errors = records.err_count
            yield dataclasses.replace(item, location=f"{name}@{at}")
            at = records.offset
        if start is not None and _data_after(fh, max(start, records.offset)):
            at = records.offset
            raise ArchiveLoadFailed("the archive ends inside a record, or holds bytes that are not one")
    except (ArchiveLoadFailed, *READ_ERRORS) as err:
        # warcio's messages run to a paragraph, with the bytes it read; the
        # first sentence says it.
        message = " ".join(str(err).split()).removeprefix("ERROR: ").split(". ")[0]
        if message.startswith("Unknown archive format"):
            message = "not a WARC or ARC record"
        damage.append((at, at if suspect is None else suspect, message[:160] or type(err).__name__))


def _parsed(records: ArchiveIterator) -> Iterator:
    """warcio's records, with the ``ValueError``, ``TypeError`` and
    ``AttributeError`` it raises on some damaged headers as
    ``ArchiveLoadFailed`` (and ours, reading a record, left as they are)."""
    iterator = iter(records)
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except (ValueError, TypeError, AttributeError) as err:
            raise ArchiveLoadFailed(f"{type(err).__name__}: {err}") from err
        yield record


class _StrictReader(DecompressingBufferedReader):
    """warcio's reader, failing on a gzip member that does not decompress
    (warcio writes the error to stderr and reads on as if it had ended)."""

    def _decompress(self, data: bytes) -> bytes:
        # warcio takes a first block that does not decompress for a plain
        # archive; one that starts as a gzip member is a damaged member.
        if self.decompressor is not None and data and (self.num_block_read or data[:2] == b"\x1f\x8b"):
            return self.decompressor.decompress(data)  # zlib.error: damage
        return super()._decompress(data)


#: Bytes searched at a time for the next record after a damaged one.
_SCAN_BYTES = 1 << 20


def _next_record(fh: IO[bytes], pos: int) -> int | None:
    """The offset of the first record that starts after ``pos``: a gzip
    member holding a WARC or ARC header, or a ``WARC/`` line (whichever
    comes first: the damage may be in the archive's first bytes, which
    tell a gzipped one)."""
    markers = (b"\x1f\x8b\x08", b"WARC/")
    while True:
        fh.seek(pos)
        block = fh.read(_SCAN_BYTES + 5)
        if len(block) < 5:
            return None
        candidates = sorted((found, marker) for marker in markers for found in _finds(block, marker))
        for found, marker in candidates:
            if _record_starts(fh, pos + found, gzipped=marker == markers[0]):
                return pos + found
        pos += _SCAN_BYTES


def _finds(block: bytes, marker: bytes) -> Iterator[int]:
    found = block.find(marker)
    while found >= 0:
        yield found
        found = block.find(marker, found + 1)


def _record_starts(fh: IO[bytes], pos: int, gzipped: bool) -> bool:
    """Whether a record starts at ``pos``: a gzip member whose text does, or
    a ``WARC/`` version line followed by a ``WARC-`` header (a page about
    web archives may quote the version line, hardly a header block)."""
    fh.seek(pos)
    head = fh.read(4096)
    if gzipped:
        try:
            head = zlib.decompressobj(31).decompress(head, 64)
        except zlib.error:
            return False
        if head[:9] == b"filedesc:":
            return True  # an ARC file's header record
    version, _, rest = head.partition(b"\n")
    return version.rstrip(b"\r") in (b"WARC/1.0", b"WARC/1.1", b"WARC/0.18", b"WARC/0.17") and rest.startswith(b"WARC-")


def _data_after(fh: IO[bytes], pos: int) -> bool:
    """Whether the archive holds more than blank lines after ``pos``."""
    fh.seek(pos)
    while block := fh.read(65536):
        if block.strip():
            return True
    return False


def _item(record) -> Item:
    location = ""
    kind = record.rec_type
    uri = record.rec_headers.get_header("WARC-Target-URI")
    if kind == "revisit" and uri:
        return SeenRecord(location, uri)
    if kind != "response" or not uri:
        return SkippedRecord(location, f"WARC {kind} record")
    http = record.http_headers
    if http is None:
        return SkippedRecord(location, "not an HTTP response")
    status = http.get_statuscode()
    if status != "200":
        return SkippedRecord(location, f"HTTP status {status}")
    content_type = http.get_header("Content-Type") or ""
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    if mime and mime not in HTML_TYPES:
        return SkippedRecord(location, f"not HTML ({mime})")
    try:
        body = record.content_stream().read(MAX_HTML_BYTES + 1)
    except READ_ERRORS as err:
        return BadRecord(location, f"cannot read the response body: {err}", uri)
    if len(body) > MAX_HTML_BYTES:
        return BadRecord(location, f"page larger than {MAX_HTML_BYTES // 1_048_576} MB", uri)
    if not mime and not body.lstrip()[:100].lower().startswith((b"<!doctype html", b"<html")):
        return SkippedRecord(location, "not HTML (no content type)")
    text, encoding = decode(body, declared=_charset(params))
    crawled = record.rec_headers.get_header("WARC-Date") or _http_date(http.get_header("Last-Modified"))
    data = {"html": text, "url": uri, "path": uri, "crawled": crawled}
    return RawRecord(location, data, encoding)


def _http_date(value: str | None) -> str | None:
    """An HTTP date (``Last-Modified``) as ISO text, or None."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).isoformat()
    except (TypeError, ValueError):
        return None


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip(" \"'"):
            return value.strip(" \"'")
    return None
