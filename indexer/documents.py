"""What a document is: the marshmallow schema every incoming record passes.

The schema is the single description of an article's fields; the indexer,
the export command and the API all go through it, so a record that loads
here is one the index can hold and give back unchanged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validates_schema

_TAG_SPLIT_RE = re.compile(r"[,，;；、]")
_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%Y.%m.%d %H:%M",
    "%Y.%m.%d",
    "%Y%m%d",
)
_CN_DATE_RE = re.compile(
    r"^\s*(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]"
    r"(?:\s*(\d{1,2})\s*[:：时時]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2})\s*秒?)?)?\s*$"
)
#: Half of a UTF-16 surrogate pair on its own (JSON's "\ud83d"): no character,
#: and nothing UTF-8 can write.
_LONE_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_EPOCH_RE = re.compile(r"^\d{10}(?:\d{3})?(?:\.\d+)?$")
#: Epoch times are read as the wall-clock time of the sites we crawl
#: (China Standard Time), the date their pages print.
CRAWL_ZONE = dt.timezone(dt.timedelta(hours=8))

#: Longest title and body accepted; a longer value is a crawler fault.
MAX_TITLE_CHARS = 1_000
MAX_BODY_CHARS = 2_000_000
#: Longest lead (heading lines and first sentence) indexed on its own.
LEAD_CHARS = 160


class PublishedField(fields.Field):
    """A date or a datetime, given as ISO text (``2020-06-01``,
    ``2020-06-01T13:58:00+08:00``, ``2020-06-01 13:58``), in the forms
    crawlers write (``2020/06/01``, ``2020年6月1日 13:58``) or as epoch
    seconds or milliseconds."""

    default_error_messages = {"invalid": "Not a date or datetime: {value!r}."}

    def _deserialize(self, value: Any, attr, data, **kwargs) -> dt.date | dt.datetime | None:
        if value is None or value == "":
            return None
        if isinstance(value, dt.datetime | dt.date):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            parsed = from_epoch(value)
            if parsed is None:
                raise self.make_error("invalid", value=value)
            return parsed
        if not isinstance(value, str):
            raise self.make_error("invalid", value=value)
        text = value.strip()
        parsed = parse_published(text)
        if parsed is None:
            raise self.make_error("invalid", value=value)
        return parsed

    def _serialize(self, value: Any, attr, obj, **kwargs) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return value.isoformat()


class CrawledField(PublishedField):
    """When the crawler fetched the page (``WARC-Date``). Crawl metadata,
    never a reason to lose an article: a value that is no date is dropped."""

    def _deserialize(self, value: Any, attr, data, **kwargs) -> dt.date | dt.datetime | None:
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError:
            return None


def from_epoch(value: float) -> dt.datetime | None:
    """Epoch seconds, or milliseconds (13 digits), as a datetime in the
    sites' zone; None for values outside 1970-2100."""
    seconds = value / 1000 if value >= 1e11 else value
    if not 0 <= seconds < 4_102_444_800:
        return None
    return dt.datetime.fromtimestamp(seconds, CRAWL_ZONE)


def parse_published(text: str) -> dt.date | dt.datetime | None:
    """Parse the date forms crawlers produce; None when it is none of them."""
    m = _CN_DATE_RE.match(text)
    if m:
        try:
            if m[4] is None:
                return dt.date(int(m[1]), int(m[2]), int(m[3]))
            return dt.datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0))
        except ValueError:
            return None
    if _EPOCH_RE.match(text):
        return from_epoch(float(text))
    if len(text) == 10:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            value = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        if not 1900 <= value.year <= 2100:
            return None
        return value.date() if "%H" not in fmt else value
    return None


class TagsField(fields.Field):
    """A list of tags, or one string of comma-separated tags."""

    default_error_messages = {"invalid": "Tags must be a list of strings or a string."}

    def _deserialize(self, value: Any, attr, data, **kwargs) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            items = _TAG_SPLIT_RE.split(value)
        elif isinstance(value, list | tuple):
            if not all(isinstance(v, str) for v in value):
                raise self.make_error("invalid")
            items = list(value)
        else:
            raise self.make_error("invalid")
        out: dict[str, None] = {}  # ordered and linear: 100,000 tags once took 49 s
        for item in items:
            item = " ".join(item.split())
            if item:
                out[item] = None
        return list(out)

    def _serialize(self, value: Any, attr, obj, **kwargs) -> list[str]:
        return list(value or [])


def _text(**kwargs) -> fields.String:
    return fields.String(load_default=None, allow_none=True, **kwargs)


class ArticleSchema(Schema):
    """An article as crawlers give it and as ``search export`` gives it back."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True)
    url = _text()
    title = _text()
    body = _text()
    tags = TagsField(load_default=list)
    published = PublishedField(load_default=None, allow_none=True)
    source = _text()
    author = _text()
    #: Crawl metadata, not content: where and when the crawler fetched the
    #: page (its canonical URL may differ), for --prune and the record.
    crawled = CrawledField(load_default=None, allow_none=True)
    crawl_url = _text()
    #: Which site the page belongs to, when its URL does not say (the top
    #: folder it was indexed from); set by the page reader, not exported.
    site = fields.String(load_default=None, allow_none=True, load_only=True)
    deleted = fields.Boolean(load_default=False, load_only=True)

    @pre_load
    def _id_from_url(self, data: Any, **kwargs) -> Any:
        if not isinstance(data, dict):
            raise ValidationError("A record must be a JSON object.")
        if data.get("id") in (None, "") and isinstance(data.get("url"), str) and data["url"].strip():
            data = {**data, "id": data["url"]}
        if isinstance(data.get("id"), int) and not isinstance(data.get("id"), bool):
            data = {**data, "id": str(data["id"])}
        return data

    @validates_schema
    def _check(self, data: dict[str, Any], **kwargs) -> None:
        if not data.get("id", "").strip():
            raise ValidationError("The id (or url) must not be empty.", "id")
        for name in ("id", "url", "title", "body", "source", "author", "crawl_url", "tags"):
            value = data.get(name)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, str) and _LONE_SURROGATE_RE.search(v) for v in values):
                raise ValidationError("Holds half of a surrogate pair (a broken \\u escape), not text.", name)
        if data.get("deleted"):
            return
        title = (data.get("title") or "").strip()
        body = (data.get("body") or "").strip()
        if not title and not body:
            raise ValidationError("A record needs a title or a body.", "title")
        if len(title) > MAX_TITLE_CHARS:
            raise ValidationError(f"The title is longer than {MAX_TITLE_CHARS} characters.", "title")
        if len(body) > MAX_BODY_CHARS:
            raise ValidationError(f"The body is longer than {MAX_BODY_CHARS} characters.", "body")


@dataclass
class Article:
    id: str
    url: str | None = None
    title: str | None = None
    body: str | None = None
    tags: list[str] = field(default_factory=list)
    published: dt.date | dt.datetime | None = None
    source: str | None = None
    author: str | None = None
    crawled: dt.date | dt.datetime | None = None
    crawl_url: str | None = None
    site: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The JSON form, as ``search export`` writes it."""
        return _dump_schema.dump(asdict(self))

    def content_hash(self) -> str:
        """A digest of every content field, so an unchanged record can be
        skipped. The crawl metadata (``crawled``, ``crawl_url``) is left out:
        a page fetched again unchanged is unchanged.

        The digest of ``to_record()``'s JSON, with the record built
        directly: the schema's dump (and the copy ``asdict`` makes first)
        of every record was a tenth of the indexing process's work. A test
        holds the two to the same digest (without the crawl metadata).
        """
        published = self.published
        record = {
            "id": self.id,
            "url": self.url,
            "title": self.title,
            "body": self.body,
            "tags": list(self.tags or []),
            "published": published if published is None or isinstance(published, str) else published.isoformat(),
            "source": self.source,
            "author": self.author,
        }
        blob = json.dumps(record, ensure_ascii=False, sort_keys=True)
        return hashlib.sha1(blob.encode("utf-8")).hexdigest()


#: A sentence end; a full stop ends a sentence only when it is not part of
#: an ellipsis ("另请参阅..." is a heading, not the first sentence).
_SENTENCE_END_RE = re.compile(r"[。！？!?；;]|(?<!\.)\.(?:\s|$)")


def lead_text(body: str | None, limit: int = LEAD_CHARS) -> str:
    """The opening of an article: any short heading lines, then its first
    sentence. Where a news story (or a help page) says what it is about,
    and so what a half-remembered query is most often taken from."""
    if not body:
        return ""
    out: list[str] = []
    size = 0
    for para in body.split("\n"):
        para = para.strip()
        if not para:
            continue
        # The first sentence end after some text: "8.2." numbering is not one.
        m = next((m for m in _SENTENCE_END_RE.finditer(para) if m.end() >= 6), None)
        sentence = para[: m.end()] if m else para
        out.append(sentence[: limit - size])
        size += len(out[-1])
        if m or len(para) >= 20 or size >= limit:
            break
    return "\n".join(out)


@dataclass
class Tombstone:
    id: str


_load_schema = ArticleSchema()
_dump_schema = ArticleSchema()


def load_record(data: Any) -> Article | Tombstone:
    """Validate one incoming record; raises ValidationError with the reasons."""
    loaded = _load_schema.load(data)
    if loaded.pop("deleted", False):
        return Tombstone(id=loaded["id"].strip())
    loaded["id"] = loaded["id"].strip()
    if loaded.get("title"):
        loaded["title"] = " ".join(loaded["title"].split())
    return Article(**loaded)


def describe_error(err: ValidationError) -> str:
    """One line from marshmallow's nested messages."""
    messages = err.messages
    if isinstance(messages, dict):
        parts = []
        for key, value in messages.items():
            text = "; ".join(value) if isinstance(value, list) else str(value)
            parts.append(text if key == "_schema" else f"{key}: {text}")
        return "; ".join(parts)
    if isinstance(messages, list):
        return "; ".join(str(m) for m in messages)
    return str(messages)
