"""Tables as crawl input: CSV and TSV exports of scraping tools (八爪鱼,
Octoparse, WebScraper, spreadsheets saved as CSV) and Excel workbooks.

The header row names the fields (``indexer.mapping`` maps 标题, 内容,
发布时间, 链接 … to ours). CSV goes through the standard library's ``csv``
module, which handles quoted cells over several lines; its encoding is
found from a byte-order mark, then by trying UTF-8 and GB18030 (the
superset of GBK, what Chinese Windows tools write) over the whole file,
then by detection. A file none of them decodes whole is read in the one
that leaves the fewest bytes undecoded, and the rows holding those bytes
are reported and skipped. Workbooks are read with python-calamine (Rust, no
formula evaluation, maintained): the first sheet, header in the first row.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from indexer.sources import (
    MAX_LINE_BYTES,
    NOT_DECODED,
    READ_ERRORS,
    BadRecord,
    Item,
    OnBytes,
    RawRecord,
    open_compressed,
)

csv.field_size_limit(MAX_LINE_BYTES)

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_table(path: Path, fmt: str, on_bytes: OnBytes = None) -> Iterator[Item]:
    rows = _xlsx_rows(path) if fmt == "xlsx" else _csv_rows(path, "\t" if fmt == "tsv" else None)
    header: list[str] | None = None
    try:
        for lineno, row in rows:
            if isinstance(row, BadRecord):
                yield row
                continue
            if header is None:
                header = [_header_name(cell, i) for i, cell in enumerate(row)]
                continue
            if not any(_present(cell) for cell in row):
                continue
            location = f"{path}:{lineno}"
            if any(isinstance(cell, str) and NOT_DECODED.search(cell) for cell in row):
                yield BadRecord(location, "bytes that are not text in the file's encoding")
                continue
            if len(row) > len(header) and any(_present(cell) for cell in row[len(header) :]):
                yield BadRecord(location, f"{len(row)} cells where the header names {len(header)}")
                continue
            yield RawRecord(location, {name: _value(cell) for name, cell in zip(header, row, strict=False)})
    except READ_ERRORS as err:
        yield BadRecord(f"{path}", f"cannot read further: {err}")
    if header is None:
        yield BadRecord(str(path), "no header row")
    if on_bytes:
        try:
            on_bytes(path.stat().st_size)
        except OSError:
            pass


def _header_name(cell: Any, index: int) -> str:
    name = str(cell).strip().lstrip("\ufeff") if cell is not None else ""
    return name or f"column {index + 1}"


def _present(cell: Any) -> bool:
    return cell is not None and (not isinstance(cell, str) or bool(cell.strip()))


def _value(cell: Any) -> Any:
    """A cell as a record value: empty is missing, whole numbers are
    written as such (an id of 123 read as 123.0), dates stay dates."""
    if isinstance(cell, str):
        return cell if cell.strip() else None
    if isinstance(cell, bool):
        return str(cell).lower()
    if isinstance(cell, float):
        return str(int(cell)) if cell.is_integer() else repr(cell)
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, dt.date | dt.datetime) or cell is None:
        return cell
    return str(cell)


# -- CSV -----------------------------------------------------------------


def detect_encoding(path: Path) -> tuple[str, str] | None:
    """The encoding to read a CSV file in, and how to take bytes it cannot
    decode: the one a byte-order mark names, else the first of UTF-8,
    GB18030 and the detected encoding that decodes the whole file
    ("strict"). For a file none of them decodes whole (a byte damaged in a
    copy, say), the one leaving the fewest bytes undecoded, earlier ones
    on a tie (GB18030 reads most of UTF-8's bytes as other characters),
    with those bytes kept as lone surrogates ("surrogateescape"): only
    the rows holding them are lost. None when the file cannot be read."""
    try:
        with open_compressed(path) as fh:
            head = fh.read(4)
        for bom, name in _BOMS:
            if head.startswith(bom):
                return name, "strict"
        candidates = ["utf-8", "gb18030"]
        for name in candidates:
            if _undecoded(path, name, stop=True) == 0:
                return name, "strict"
        from charset_normalizer import from_bytes

        with open_compressed(path) as fh:
            best = from_bytes(fh.read(1 << 20)).best()
        if best is not None and codecs.lookup(best.encoding).name not in candidates:
            if _undecoded(path, best.encoding, stop=True) == 0:
                return best.encoding, "strict"
            candidates.append(best.encoding)
        undecoded = {name: _undecoded(path, name) for name in candidates}
    except READ_ERRORS:
        return None
    return min(candidates, key=undecoded.__getitem__), "surrogateescape"


def _undecoded(path: Path, encoding: str, stop: bool = False) -> int:
    """The bytes of the file ``encoding`` cannot decode (``stop``: 1 at the
    first one, which is all that deciding whether it decodes needs)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
    count = 0
    with open_compressed(path) as fh:
        while chunk := fh.read(1 << 20):
            count += len(NOT_DECODED.findall(decoder.decode(chunk)))
            if stop and count:
                return count
        count += len(NOT_DECODED.findall(decoder.decode(b"", final=True)))
    return count


def _csv_rows(path: Path, delimiter: str | None) -> Iterator[tuple[int, list[str] | BadRecord]]:
    # Rows holding what the encoding cannot decode are reported by
    # ``read_table``.
    chosen = detect_encoding(path)
    if chosen is None:
        try:
            with open_compressed(path) as fh:
                fh.read(1)
        except READ_ERRORS as err:
            yield 0, BadRecord(str(path), f"cannot read: {err}")
            return
        yield 0, BadRecord(str(path), "cannot decode: neither UTF-8, GB18030 nor a detected encoding")
        return
    encoding, errors = chosen
    with open_compressed(path) as raw:
        text = io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline="")
        dialect: Any = "excel-tab" if delimiter == "\t" else _sniff_dialect(text)
        reader = csv.reader(text, dialect)
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield start, BadRecord(f"{path}:{start}", f"invalid CSV: {err}")
                start = reader.line_num + 1
                continue
            yield start, row
            start = reader.line_num + 1


def _sniff_dialect(text: io.TextIOWrapper) -> Any:
    """Comma, unless the header row is plainly separated by something else."""
    header = text.readline()
    text.seek(0)
    counts = {d: header.count(d) for d in ",;\t|"}
    best = max(counts, key=counts.get)
    if best == "," or counts[best] <= counts[","]:
        return "excel"

    class Sniffed(csv.excel):
        delimiter = best

    return Sniffed


# -- Excel ---------------------------------------------------------------


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list[Any] | BadRecord]]:
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_path(str(path))
        sheet = workbook.get_sheet_by_index(0)
        rows = sheet.iter_rows()
    except Exception as err:  # calamine raises its own error types for damaged workbooks
        yield 0, BadRecord(str(path), f"cannot read the workbook: {err}")
        return
    number = sheet.start[0] if sheet.start else 0
    while True:
        number += 1
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as err:
            yield number, BadRecord(f"{path}:{number}", f"cannot read further: {err}")
            return
        yield number, row
