"""A compact terms file: sorted, prefix-coded keys in small blocks.

Whoosh's W3 terms file is an on-disk hash: every term costs an 8-byte
length header, a 12-byte hash slot twice over (the table is half empty),
a 4-byte position in the ordered index and a 23-byte term info, and a
term with one posting pickles that posting after it. A Chinese corpus
has hundreds of thousands of terms per segment, most of them bigrams in
one document, so that overhead was three quarters of poetry-20k's index:
about 95 bytes a term, for terms of 6-8 bytes.

Here the keys (field number + term bytes, as W3 spells them) are stored
in order, 16 to a block, each key as the length it shares with the one
before and the rest; each term's info is a few varints. The first key of
every block and the block's offset form an index, read on the first
lookup, and a lookup decodes one block. A one-posting term's posting is spelled out in the same varints:
its document, weight, length byte and value, where the value is given
back to Whoosh in Whoosh's own encoding (a frequency, or a position list
pickled as ``Positions`` does).

Infos come back as Whoosh's ``W3TermInfo`` with exactly the values a W3
file would have given (weights rounded through float32 as W3 stores
them), so scoring, bounds and matchers are unchanged.
"""

from __future__ import annotations

import bisect
import operator
import pickle
import sys
from array import array
from collections.abc import Iterator, Sequence
from struct import Struct

from whoosh.codec.whoosh3 import W3TermInfo
from whoosh.system import pack_uint, unpack_uint
from whoosh.util.numeric import byte_to_length, length_to_byte

MAGIC = b"ZTF1"
#: Terms per block: a lookup decodes half a block on average.
BLOCK_TERMS = 16
#: Bytes buffered before a write to the terms or postings file (here and
#: in ``indexer.codec``). The buffer is a list of small bytes objects, each
#: with some thirty bytes of overhead, joined for the write: at 4 MB it
#: took 13 MB at a writer's peak; writes of 256 KB are as quick.
FLUSH_BYTES = 1 << 18
#: Terms with at most this many postings keep them in their info. A
#: posting list in W3 blocks costs some 50 bytes before its first posting
#: (a header, a pickled block header, a pickled block), five times what
#: these postings take as varints here, and most terms of a Chinese
#: corpus are bigrams in two to eight documents; past that, the blocks'
#: skipping and bounds start to pay.
INLINE_LIMIT = 8

_TRAILER = Struct("<QQQQI4s")  # fieldmap at, keys at, offsets at, terms, blocks, magic
_F32 = Struct(">f")
_F64 = Struct(">d")

_INLINED = 1
_FLOAT = 2
# What an inlined posting's value is (bits 2-3 of the flags).
_VALUE_NONE = 0
_VALUE_RAW = 4
_VALUE_FREQ = 8  # pack_uint(int(weight)): Whoosh's Frequency format
_VALUE_POSITIONS = 12  # pack_uint(n) + pickled position deltas: Positions
_VALUE_KIND = 12
_MANY = 16  # more than one posting inlined: their count follows

_SMALL = [bytes((i,)) for i in range(128)]
_SMALL_BYTE = [bytes((i,)) for i in range(256)]


def varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


_VARINT_TABLE = 1 << 14
_VARINTS = [varint(i) for i in range(_VARINT_TABLE)]


def _read_varint(buf, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 128:
        return b, pos + 1
    n = b & 127
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 127) << shift
        if b < 128:
            return n, pos
        shift += 7


def _skip(buf, pos: int) -> int:
    """The position after the varint length at ``pos`` and the bytes it counts."""
    n, pos = _read_varint(buf, pos)
    return pos + n


def _f32(value: float) -> float:
    return _F32.unpack(_F32.pack(value))[0]


def _small_integral(value: float, limit: int) -> bool:
    return 0 <= value < limit and value == int(value)


# Term infos -------------------------------------------------------------

_POSITION_PAYLOADS: dict[bytes, bytes | None] = {}
_PAYLOAD_MEMO_LIMIT = 65_536


def _positions_payload(value: bytes) -> bytes | None:
    """``value`` as varints if it is exactly what Whoosh's ``Positions``
    format writes (so that it can be written back the same), else None."""
    try:
        return _POSITION_PAYLOADS[value]
    except KeyError:
        pass
    payload = None
    if len(value) > 4:
        try:
            deltas = pickle.loads(value[4:])
        except Exception:
            deltas = None
        if (
            isinstance(deltas, list)
            and all(type(d) is int and d >= 0 for d in deltas)
            and unpack_uint(value[:4])[0] == len(deltas)
            and _positions_value(deltas) == value
        ):
            payload = varint(len(deltas)) + b"".join(map(varint, deltas))
    if len(_POSITION_PAYLOADS) < _PAYLOAD_MEMO_LIMIT:
        _POSITION_PAYLOADS[value] = payload
    return payload


def _positions_value(deltas: list[int]) -> bytes:
    return pack_uint(len(deltas)) + pickle.dumps(deltas, 2)


def inlined_info(
    ids: Sequence[int], weights: Sequence[float], lengthbytes: bytes, values: Sequence[bytes] | None
) -> bytes:
    """The info of a term with a few postings, the postings included
    (Whoosh's "inlined" postings, which it reads as a ``ListMatcher``).
    ``lengthbytes``: each document's field length byte; ``values``: None
    where the field's format stores none.

    Written for most terms of a build: each posting's weight and value
    take one of a few forms that repeat (a weight of 1, one position), so
    their encoding is remembered."""
    n = len(ids)
    if values is None:
        values = (None,) * n
    if n == 1:
        docnum = ids[0]
        flags, part = _posting_part(weights[0], values[0])
        return b"".join(
            (
                _SMALL[_INLINED | flags],
                _VARINTS[docnum] if docnum < _VARINT_TABLE else varint(docnum),
                _SMALL_BYTE[lengthbytes[0]],
                part,
            )
        )
    parts = list(map(_posting_part, weights, values))
    flags = parts[0][0]
    if any(p[0] != flags for p in parts):
        # Mixed forms: every posting in the most general one.
        flags = _FLOAT | _VALUE_RAW if values[0] is not None else _FLOAT
        parts = [
            (flags, _F64.pack(w) + (b"" if v is None else varint(len(v)) + v))
            for w, v in zip(weights, values, strict=True)
        ]
    out = [_SMALL[_INLINED | _MANY | flags], varint(n), varint(ids[0])]
    out += map(varint, map(operator.sub, ids[1:], ids))
    out.append(_SMALL_BYTE[min(lengthbytes.replace(b"\x00", b""), default=0)])
    out.append(_SMALL_BYTE[max(lengthbytes)])
    out += [p[1] for p in parts]
    return b"".join(out)


_PARTS: dict[tuple[float, bytes | None], tuple[int, bytes]] = {}


def _posting_part(weight: float, value: bytes | None) -> tuple[int, bytes]:
    """(flags, bytes) of one inlined posting's weight and value."""
    key = (weight, value)
    try:
        return _PARTS[key]
    except KeyError:
        pass
    if _small_integral(weight, 1 << 53):
        flags = 0
        part = varint(int(weight))
    else:
        flags = _FLOAT
        part = _F64.pack(weight)
    if value is None:
        pass
    elif len(value) == 4 and _small_integral(weight, 1 << 32) and value == pack_uint(int(weight)):
        flags |= _VALUE_FREQ
    else:
        payload = _positions_payload(value)
        if payload is not None:
            flags |= _VALUE_POSITIONS
            part += payload
        else:
            flags = _FLOAT | _VALUE_RAW
            part = _F64.pack(weight) + varint(len(value)) + value
    if len(_PARTS) < _PAYLOAD_MEMO_LIMIT and (value is None or len(value) < 64):
        _PARTS[key] = (flags, part)
    return flags, part


def extent_info(
    doc_frequency: int,
    total_weight: float,
    max_weight: float,
    min_length: int,
    max_length: int,
    min_id: int,
    max_id: int,
    offset: int,
    length: int,
) -> bytes:
    """The info of a term whose postings are blocks in the postings file.
    Weights are kept as W3 keeps them, in float32."""
    if _small_integral(total_weight, 1 << 24) and _small_integral(max_weight, 1 << 24):
        flags = 0
        weights = varint(int(total_weight)) + varint(int(max_weight))
    else:
        flags = _FLOAT
        weights = _F32.pack(total_weight) + _F32.pack(max_weight)
    return b"".join(
        (
            _SMALL[flags],
            varint(doc_frequency),
            weights,
            _SMALL_BYTE[min_length],
            _SMALL_BYTE[max_length],
            varint(min_id),
            varint(max_id - min_id),
            varint(offset),
            varint(length),
        )
    )


def encode_info(info: W3TermInfo) -> bytes:
    """``info`` (as Whoosh's own postings writer makes it) in this form."""
    if info.is_inlined():
        ids, weights, values = info.inlined_postings()
        minbyte = 0 if info._minlength is None else length_to_byte(info._minlength)
        lengthbytes = bytes((minbyte,)) + bytes((length_to_byte(info.max_length()),)) * (len(ids) - 1)
        return inlined_info(ids, weights, lengthbytes, None if values is None or None in values else values)
    offset, length = info.extent()
    return extent_info(
        info.doc_frequency(),
        info.weight(),
        info.max_weight(),
        0 if info._minlength is None else length_to_byte(info._minlength),
        length_to_byte(info.max_length()),
        info.min_id(),
        info.max_id(),
        offset,
        length,
    )


def doc_frequency(buf: bytes) -> int:
    """The document frequency in an info, without decoding the rest."""
    flags = buf[0]
    if flags & _INLINED and not flags & _MANY:
        return 1
    return _read_varint(buf, 1)[0]


def decode_info(buf: bytes) -> W3TermInfo:
    """A ``W3TermInfo`` equal to the one W3 would have read."""
    info = W3TermInfo()
    flags = buf[0]
    if flags & _INLINED:
        n, pos = _read_varint(buf, 1) if flags & _MANY else (1, 1)
        docnum, pos = _read_varint(buf, pos)
        ids = [docnum]
        for _ in range(n - 1):
            delta, pos = _read_varint(buf, pos)
            docnum += delta
            ids.append(docnum)
        minlength = byte_to_length(buf[pos])
        if n == 1:
            maxlength = minlength
            pos += 1
        else:
            maxlength = byte_to_length(buf[pos + 1])
            pos += 2
        kind = flags & _VALUE_KIND
        weights = []
        values = []
        for _ in range(n):
            if flags & _FLOAT:
                (weight,) = _F64.unpack_from(buf, pos)
                pos += 8
            else:
                weight, pos = _read_varint(buf, pos)
                weight = float(weight)
            weights.append(weight)
            if kind == _VALUE_NONE:
                values.append(None)
            elif kind == _VALUE_FREQ:
                values.append(pack_uint(int(weight)))
            elif kind == _VALUE_POSITIONS:
                count, pos = _read_varint(buf, pos)
                deltas = []
                for _ in range(count):
                    d, pos = _read_varint(buf, pos)
                    deltas.append(d)
                values.append(_positions_value(deltas))
            else:
                count, pos = _read_varint(buf, pos)
                values.append(bytes(buf[pos : pos + count]))
                pos += count
        info._weight = _f32(sum(weights))
        info._df = n
        info._minlength = minlength
        info._maxlength = maxlength
        info._maxweight = _f32(max(0.0, max(weights)))
        info._minid = ids[0]
        info._maxid = ids[-1]
        info._inlined = (tuple(ids), tuple(weights), tuple(values))
        return info
    df, pos = _read_varint(buf, 1)
    if flags & _FLOAT:
        (total,) = _F32.unpack_from(buf, pos)
        (maxweight,) = _F32.unpack_from(buf, pos + 4)
        pos += 8
    else:
        total, pos = _read_varint(buf, pos)
        maxweight, pos = _read_varint(buf, pos)
        total, maxweight = float(total), float(maxweight)
    info._weight = total
    info._df = df
    info._minlength = byte_to_length(buf[pos])
    info._maxlength = byte_to_length(buf[pos + 1])
    info._maxweight = maxweight
    minid, pos = _read_varint(buf, pos + 2)
    span, pos = _read_varint(buf, pos)
    info._minid = minid
    info._maxid = minid + span
    info._offset, pos = _read_varint(buf, pos)
    info._length, pos = _read_varint(buf, pos)
    return info


# The file ---------------------------------------------------------------


class TermFileWriter:
    """Writes keys given in increasing order, with their info bytes."""

    def __init__(self, dbfile) -> None:
        self._file = dbfile
        self._parts: list[bytes] = [MAGIC]
        self._pos = len(MAGIC)
        self._flushed = 0
        self._in_block = BLOCK_TERMS
        self._last = b""
        self._first_keys: list[bytes] = []
        self._block_offsets = array("Q")
        self._count = 0

    def add(self, key: bytes, info: bytes) -> None:
        if self._in_block == BLOCK_TERMS:
            self._in_block = 0
            self._first_keys.append(key)
            self._block_offsets.append(self._pos)
            shared = 0
        else:
            last = self._last
            limit = min(len(last), len(key))
            # Keys of one field share its two-byte number.
            shared = 2 if limit >= 2 and last[:2] == key[:2] else 0
            while shared < limit and last[shared] == key[shared]:
                shared += 1
        suffix = key[shared:]
        small = _SMALL
        n = len(suffix)
        size = len(info)
        entry = b"".join(
            (
                small[shared] if shared < 128 else varint(shared),
                small[n] if n < 128 else varint(n),
                suffix,
                small[size] if size < 128 else varint(size),
                info,
            )
        )
        self._parts.append(entry)
        self._pos += len(entry)
        self._in_block += 1
        self._last = key
        self._count += 1
        if self._pos - self._flushed > FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        self._file.write(b"".join(self._parts))
        self._parts = []
        self._flushed = self._pos

    def close(self, fieldmap: dict[str, int]) -> None:
        self._block_offsets.append(self._pos)
        key_ends = array("Q", [0])
        total = 0
        for key in self._first_keys:
            total += len(key)
            key_ends.append(total)
        fieldmap_at = self._pos
        fieldmap_bytes = pickle.dumps(dict(fieldmap), 4)
        keys_at = fieldmap_at + len(fieldmap_bytes)
        keys_bytes = _le(key_ends) + b"".join(self._first_keys)
        offsets_at = keys_at + len(keys_bytes)
        self._parts += [
            fieldmap_bytes,
            keys_bytes,
            _le(self._block_offsets),
            _TRAILER.pack(fieldmap_at, keys_at, offsets_at, self._count, len(self._first_keys), MAGIC),
        ]
        self._flush()
        self._file.close()


def _le(values: array) -> bytes:
    if sys.byteorder == "big":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _from_le(typecode: str, data) -> array:
    values = array(typecode)
    values.frombytes(data)
    if sys.byteorder == "big":
        values.byteswap()
    return values


class TermFileReader:
    """Looks keys up in a terms file read in place (``buf``: the whole file)."""

    def __init__(self, buf) -> None:
        if len(buf) < len(MAGIC) + _TRAILER.size or bytes(buf[: len(MAGIC)]) != MAGIC:
            raise ValueError("not a terms file of this version")
        fieldmap_at, keys_at, offsets_at, count, blocks, magic = _TRAILER.unpack_from(buf, len(buf) - _TRAILER.size)
        if magic != MAGIC:
            raise ValueError("the terms file is truncated")
        self._buf = buf
        self.fieldmap: dict[str, int] = pickle.loads(buf[fieldmap_at:keys_at])
        self.count = count
        self._blocks = blocks
        ends_size = (blocks + 1) * 8
        self._key_ends = _from_le("Q", buf[keys_at : keys_at + ends_size])
        self._keys_base = keys_at + ends_size
        self._offsets = _from_le("Q", buf[offsets_at : offsets_at + ends_size])
        self._range = range(blocks)
        self._first_keys: list[bytes] | None = None

    def _block(self, key: bytes) -> int:
        """The block that would hold ``key`` (-1: before the first)."""
        keys = self._first_keys
        if keys is None:
            # Read on the first lookup (a few ms for half a million terms),
            # then searched without a Python call per step.
            ends = self._key_ends
            blob = bytes(self._buf[self._keys_base : self._keys_base + ends[-1]])
            keys = self._first_keys = [blob[ends[i] : ends[i + 1]] for i in self._range]
        return bisect.bisect_right(keys, key) - 1

    def _entries(self, block: int) -> Iterator[tuple[bytes, bytes]]:
        """(key, info bytes) of each entry of ``block``, in order."""
        data = bytes(self._buf[self._offsets[block] : self._offsets[block + 1]])
        pos = 0
        size = len(data)
        last = b""
        while pos < size:
            shared, pos = _read_varint(data, pos)
            n, pos = _read_varint(data, pos)
            last = last[:shared] + data[pos : pos + n]
            pos += n
            n, pos = _read_varint(data, pos)
            yield last, data[pos : pos + n]
            pos += n

    def get(self, key: bytes) -> bytes | None:
        """The info bytes of ``key``, or None.

        A query asks each segment about 50-300 terms, most of them missing,
        so this is walked some 10,000 times a second per worker. Entries
        are front-coded against the one before, and a key is only rebuilt
        where it could equal ``key``: ``matched`` is how much of ``key`` the
        last entry (smaller than ``key``) shares. An entry sharing more of
        that entry than ``matched`` is smaller than ``key`` too; one sharing
        less is larger (the keys are sorted and distinct), so ``key`` is
        missing; only one sharing exactly ``matched`` is compared.
        """
        block = self._block(key)
        if block < 0:
            return None
        data = bytes(self._buf[self._offsets[block] : self._offsets[block + 1]])
        size = len(data)
        pos = matched = 0
        while pos < size:
            shared = data[pos]
            if shared < 128:
                pos += 1
            else:
                shared, pos = _read_varint(data, pos)
            n = data[pos]
            if n < 128:
                pos += 1
            else:
                n, pos = _read_varint(data, pos)
            if shared < matched:
                return None
            if shared == matched:
                end = pos + n
                wanted = key[matched:]
                suffix = data[pos:end]
                if suffix == wanted:
                    n, pos = _read_varint(data, end)
                    return data[pos : pos + n]
                if suffix > wanted:
                    return None
                common = 0
                limit = min(n, len(wanted))
                while common < limit and suffix[common] == wanted[common]:
                    common += 1
                matched += common
            pos += n
            n = data[pos]
            pos = pos + 1 + n if n < 128 else _skip(data, pos)
        return None

    def items_from(self, key: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """(key, info bytes) of every key from ``key`` on, in order."""
        for block in range(max(self._block(key), 0), self._blocks):
            for current, info in self._entries(block):
                if current >= key:
                    yield current, info
