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
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from warcio.archiveiterator import ArchiveIterator
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
    """The items of one web archive; ``name@offset`` locates each record."""
    records = ArchiveIterator(fh, arc2warc=True)
    location = f"{name}@0"
    done = 0
    try:
        for record in records:
            item = _item(record)
            # warcio knows a record's offset only once its body was read.
            offset = records.get_record_offset()
            location = f"{name}@{offset}"
            yield dataclasses.replace(item, location=location)
            if on_bytes:
                on_bytes(max(0, offset - done))
                done = offset
    except (ArchiveLoadFailed, *READ_ERRORS) as err:
        # warcio's messages run to a paragraph; its first sentence says it.
        message = " ".join(str(err).split()).removeprefix("ERROR: ").split(". ")[0] or type(err).__name__
        yield BadRecord(location, f"cannot read further: {message}")


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
