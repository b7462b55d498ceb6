"""Document conversion: PDF, Word, PowerPoint, HTML, e-mail, Excel, reStructuredText, CSV and
Markdown/text files in, Markdown out, so the structure-aware chunker sees the headings.

`convert(data, filename)` converts one file in this process and never raises for bad input:
a file that cannot be used comes back with `markdown=None` and one of REJECT_REASONS.
`convert_many(items)` converts a batch in worker processes, each with a wall-clock timeout
and an address-space cap per file, so one pathological file (a 2,000-page PDF, a zip bomb, a
parser that loops) is rejected on its own and the rest of the batch converts.

The Markdown of every converted (non-Markdown) format is NFC-normalised, uses LF line endings
and has no leading or trailing whitespace, so the staging step's trim/NFC/LF normalisation
leaves it, and the page offsets into it, unchanged. Markdown and text files pass through
unchanged except for YAML front matter, which moves into `metadata`.

Per format (the parsing libraries are imported on first use):

| extension | library | Markdown |
|---|---|---|
| .pdf | pypdf | text per page; running headers/footers dropped; big type as headings, tables |
| .docx | python-docx | Title/Heading 1-6 styles as headings, list paragraphs as lists, tables |
| .pptx | python-pptx | one `## title` section per slide (text, tables, speaker notes) |
| .html/.htm | BeautifulSoup (lxml) | h1-h6, lists, tables, code; page chrome dropped |
| .eml | email (stdlib) | the text/plain body, else the text/html one converted as HTML |
| .xlsx | openpyxl (read-only) | one `## sheet` section per sheet with a table |
| .rst | (none) | underlined/overlined titles become headings |
| .csv | csv (stdlib) | one table |
| .md/.markdown/.txt | PyYAML | unchanged; front matter into metadata |
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import email
import email.policy
import email.utils
import io
import json
import math
import os
import re
import resource
import subprocess
import sys
import time
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import PurePath
from typing import Any

CONVERTER_VERSION = "2"  # bump when output changes; part of the conversion cache key

TEXT_EXTENSIONS = frozenset({".md", ".markdown", ".txt"})
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".pdf", ".docx", ".pptx", ".html", ".htm", ".eml", ".xlsx", ".rst", ".csv"} | TEXT_EXTENSIONS
)
REJECT_REASONS = (
    "unsupported_format",
    "empty_file",
    "encrypted",
    "corrupt_file",
    "no_text_layer",
    "converts_to_nothing",
    "too_large",
    "conversion_timeout",
)
# A CSV file or a worksheet becomes a table of at most this many data rows (and columns); the
# rest is cut, said in one line under the table and in metadata["truncated"].
MAX_TABLE_ROWS = 5000
MAX_TABLE_COLUMNS = 100
# Front matter larger than this, or with more nodes (YAML aliases can expand a small text into
# a huge structure), is left in the text as if it were invalid.
MAX_FRONT_MATTER_CHARS = 64 * 1024
MAX_FRONT_MATTER_NODES = 10_000
MAX_ZIP_ENTRIES = 10_000
# CSV, RST and text files up to this size are converted in the calling process by
# convert_many: their converters are linear-time pure Python with no parser to hang.
IN_PROCESS_MAX_BYTES = 1024 * 1024
DETAIL_MAX_CHARS = 300


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 50 * 1024 * 1024  # input file size
    max_pages: int = 1000  # PDF pages or PPTX slides
    timeout_s: float = 60.0  # wall clock per file in convert_many
    max_memory_mb: int = 1024  # address space of a convert_many worker
    # zip-based formats (.docx .pptx .xlsx): the declared uncompressed size of all entries ...
    max_uncompressed_bytes: int = 200 * 1024 * 1024
    # ... and of one entry relative to its compressed size (entries over 1 MB only)
    max_compression_ratio: float = 200.0


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Conversion:
    markdown: str | None  # None when rejected
    title: str | None
    pages: list[int]  # char offsets into markdown where each page/slide starts
    page_kind: str | None  # 'page' | 'slide' | None
    metadata: dict
    reject_reason: str | None
    detail: str | None

    def as_dict(self) -> dict:
        return {
            "markdown": self.markdown,
            "title": self.title,
            "pages": list(self.pages),
            "page_kind": self.page_kind,
            "metadata": self.metadata,
            "reject_reason": self.reject_reason,
            "detail": self.detail,
        }


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def rejected(reason: str, detail: str, metadata: dict | None = None) -> Conversion:
    assert reason in REJECT_REASONS, reason
    return Conversion(None, None, [], None, metadata or {}, reason, _one_line(detail))


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= DETAIL_MAX_CHARS else line[: DETAIL_MAX_CHARS - 1] + "…"


# ---------------------------------------------------------------- Markdown building blocks

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HEADING_LIKE = re.compile(r"^(\s{0,3})(#{1,6}(?:[ \t]|$))")
_FENCE_LIKE = re.compile(r"^(\s{0,3})(```|~~~)")
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")


def _clean(text: str) -> str:
    """NFC, LF line endings, no control characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", _CONTROL.sub("", text))


def _escape_line(line: str) -> str:
    """A text line that the chunker would take for a heading or a code fence, made literal."""
    line = _HEADING_LIKE.sub(r"\1\\\2", line)
    return _FENCE_LIKE.sub(r"\1\\\2", line)


def _escape_text(text: str) -> str:
    return "\n".join(_escape_line(line) for line in text.split("\n"))


def _inline(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _heading(level: int, text: str) -> str:
    text = _inline(text)
    return f"{'#' * max(1, min(level, 6))} {text}" if text else ""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        text = value.isoformat()
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        text = str(int(value))
    else:
        text = str(value)
    return _inline(_CONTROL.sub("", text)).replace("\\", "\\\\").replace("|", "\\|")


def markdown_table(rows: list[list[Any]]) -> str:
    """A Markdown table; the first row is the header. Ragged rows are padded, trailing empty
    columns dropped."""
    cells = [[_cell(v) for v in row[:MAX_TABLE_COLUMNS]] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max(len(row) for row in cells)
    while width > 1 and not any(len(row) >= width and row[width - 1] for row in cells):
        width -= 1
    cells = [(row + [""] * width)[:width] for row in cells]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + " --- |" * width]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)


def _join_blocks(blocks: list[str]) -> str:
    return "\n\n".join(b.strip("\n") for b in blocks if b and b.strip())


class _Paged:
    """Markdown assembled page by page, with the offset where each page starts."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pages: list[int] = []
        self.length = 0

    def add(self, text: str) -> None:
        text = _clean(text).strip()
        if self.parts and text:
            self.parts.append("\n\n")
            self.length += 2
        self.pages.append(self.length)
        if text:
            self.parts.append(text)
            self.length += len(text)

    def markdown(self) -> str:
        return "".join(self.parts)


def _finish(
    markdown: str,
    title: str | None = None,
    metadata: dict | None = None,
    pages: list[int] | None = None,
    page_kind: str | None = None,
    clean: bool = True,
) -> Conversion:
    if clean:
        markdown = _clean(markdown).strip()
    title = _inline(title) if title else None
    return Conversion(markdown, title or None, pages or [], page_kind, metadata or {}, None, None)


def _jsonable(value: Any, budget: list[int] | None = None) -> Any:
    """A JSON-serialisable copy; `budget` (a one-item list) counts nodes down."""
    if budget is not None:
        budget[0] -= 1
        if budget[0] < 0:
            raise _Rejected("too_large", "metadata too large")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v, budget) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, budget) for v in value]
    return str(value)


def _properties(source: Any, names: dict[str, str]) -> dict:
    """Non-empty attributes of a core-properties object, under metadata names."""
    found = {}
    for attribute, key in names.items():
        try:
            value = getattr(source, attribute, None)
        except Exception:  # a malformed property value
            continue
        if isinstance(value, str):
            value = _inline(_CONTROL.sub("", value))
        if value not in (None, "", 0):
            found[key] = _jsonable(value)
    return found


_OOXML_PROPERTIES = {
    "title": "title",
    "author": "author",
    "creator": "author",
    "subject": "subject",
    "keywords": "keywords",
    "category": "category",
    "comments": "comments",
    "description": "comments",
    "created": "created",
    "modified": "modified",
    "last_modified_by": "last_modified_by",
    "lastModifiedBy": "last_modified_by",
    "revision": "revision",
    "language": "language",
}


# ---------------------------------------------------------------- text decoding


def _decode(data: bytes) -> tuple[str, str]:
    """Text and the encoding it was read with: UTF-8 (with or without BOM), UTF-16 with a BOM,
    else Windows-1252. Binary content (NUL bytes without a UTF-16 BOM) is corrupt."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as error:
            raise _Rejected("corrupt_file", f"invalid UTF-16 text: {error}") from None
    if b"\x00" in data[:8192]:
        raise _Rejected("corrupt_file", "binary content (NUL bytes) in a text format")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace"), "cp1252"


# ---------------------------------------------------------------- Markdown / text

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S | re.M)


def split_front_matter(text: str) -> tuple[dict, str]:
    """(front matter, rest). Invalid, non-mapping or oversized front matter: ({}, text)."""
    match = _FRONT_MATTER.match(text)
    if not match or len(match.group(1)) > MAX_FRONT_MATTER_CHARS:
        return {}, text
    import yaml

    try:
        loaded = yaml.safe_load(match.group(1))
        if not isinstance(loaded, dict):
            return {}, text
        metadata = _jsonable(loaded, [MAX_FRONT_MATTER_NODES])
        json.dumps(metadata)
    except (yaml.YAMLError, _Rejected, ValueError, TypeError, RecursionError):
        return {}, text
    return metadata, text[match.end() :]


def _convert_text(data: bytes, limits: Limits) -> Conversion:
    text, encoding = _decode(data)
    metadata, body = split_front_matter(text)
    title = metadata.get("title") if isinstance(metadata.get("title"), str) else None
    if encoding != "utf-8":
        metadata = {**metadata, "encoding": encoding} if metadata else {"encoding": encoding}
    return _finish(body, title, metadata, clean=False)


# ---------------------------------------------------------------- reStructuredText

_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1+[ \t]*$")


def rst_to_markdown(text: str) -> str:
    """Section titles (underlined, optionally overlined, with one punctuation character
    repeated) become headings, levels in order of first appearance of each style; the rest
    of the text is kept as it is, with heading-like lines escaped."""
    lines = _clean(text).split("\n")
    styles: list[tuple[str, bool]] = []
    out: list[str] = []
    i = 0
    n = len(lines)

    def is_adornment(k: int) -> bool:
        return 0 <= k < n and bool(_ADORNMENT.match(lines[k]))

    def is_title(k: int, under: int) -> bool:
        title = lines[k]
        stripped = title.strip()
        if not stripped or title[0] in " \t" or _ADORNMENT.match(title):
            return False
        length = len(lines[under].rstrip())
        return length >= len(title.rstrip()) or length >= 4

    def add_heading(char: str, overline: bool, title: str) -> None:
        style = (char, overline)
        if style not in styles:
            styles.append(style)
        out.append(_heading(styles.index(style) + 1, title))

    while i < n:
        line = lines[i]
        before_blank = i == 0 or not lines[i - 1].strip()
        # Overline, title, underline of the same character.
        if (
            before_blank
            and is_adornment(i)
            and i + 2 < n
            and is_adornment(i + 2)
            and lines[i + 2].rstrip()[0] == line.rstrip()[0]
            and lines[i + 1].strip()
            and not _ADORNMENT.match(lines[i + 1])
        ):
            add_heading(line[0], True, lines[i + 1])
            i += 3
            continue
        if before_blank and i + 1 < n and is_adornment(i + 1) and is_title(i, i + 1):
            add_heading(lines[i + 1][0], False, line)
            i += 2
            continue
        out.append(_escape_line(line))
        i += 1
    return "\n".join(out)


def _convert_rst(data: bytes, limits: Limits) -> Conversion:
    text, encoding = _decode(data)
    markdown = rst_to_markdown(text)
    first = re.search(r"(?m)^# (.+)$", markdown)
    metadata = {"encoding": encoding} if encoding != "utf-8" else {}
    return _finish(markdown, first.group(1) if first else None, metadata)


# ---------------------------------------------------------------- CSV


def _convert_csv(data: bytes, limits: Limits) -> Conversion:
    text, encoding = _decode(data)
    sample = text[: 64 * 1024]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows: list[list[str]] = []
    truncated = False
    try:
        for row in csv.reader(io.StringIO(text, newline=""), dialect):
            if not any(cell.strip() for cell in row):
                continue
            if len(rows) > MAX_TABLE_ROWS:  # header + MAX_TABLE_ROWS data rows
                truncated = True
                break
            rows.append(row)
    except csv.Error as error:
        raise _Rejected("corrupt_file", f"CSV: {error}") from None
    metadata: dict = {"rows": len(rows) - 1} if rows else {}
    if encoding != "utf-8":
        metadata["encoding"] = encoding
    blocks = [markdown_table(rows)]
    if truncated:
        metadata["truncated"] = True
        blocks.append(f"(rows after the first {MAX_TABLE_ROWS} are not converted)")
    return _finish(_join_blocks(blocks), None, metadata)


# ---------------------------------------------------------------- HTML

_DROPPED_TAGS = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "nav",
        "aside",
        "form",
        "footer",
        "iframe",
        "svg",
        "canvas",
        "button",
        "select",
        "head",
    }
)
_DROPPED_ROLES = frozenset({"navigation", "banner", "contentinfo", "search"})
_BLOCK_TAGS = frozenset(
    {
        "address",
        "article",
        "body",
        "center",
        "dd",
        "details",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "hr",
        "html",
        "li",
        "main",
        "p",
        "section",
        "summary",
        "caption",
        "header",
    }
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BREAK = "\x1e"  # stands for <br> until inline whitespace is collapsed


class _HtmlWalker:
    """Walks a parsed document into Markdown blocks."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.inline: list[str] = []

    def flush(self) -> None:
        text = _SPACES.sub(" ", "".join(self.inline))
        self.inline = []
        lines = [_escape_line(line.strip()) for line in text.split(_BREAK)]
        text = "\n".join(line for line in lines if line)
        if text:
            self.blocks.append(text)

    def walk(self, node: Any) -> list[str]:
        from bs4 import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

        skipped = (Comment, Declaration, Doctype, ProcessingInstruction)
        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, skipped):
                    self.inline.append(_CONTROL.sub("", str(child)).replace(_BREAK, ""))
                continue
            if not isinstance(child, Tag) or _dropped(child):
                continue
            name = (child.name or "").lower()
            if name in _HEADINGS:
                self.flush()
                heading = _heading(_HEADINGS[name], child.get_text(" "))
                if heading:
                    self.blocks.append(heading)
            elif name == "br":
                self.inline.append(_BREAK)
            elif name in ("ul", "ol"):
                self.flush()
                self.blocks.append(self.list_block(child, ordered=name == "ol"))
            elif name == "table":
                self.flush()
                self.blocks.append(self.table_block(child))
            elif name == "pre":
                self.flush()
                code = _clean(child.get_text()).strip("\n")
                if code.strip():
                    body = "\n".join(
                        "    " + line if _FENCE_LIKE.match(line) else line
                        for line in code.split("\n")
                    )
                    self.blocks.append(f"```\n{body}\n```")
            elif name == "blockquote":
                self.flush()
                inner = _join_blocks(_HtmlWalker().walk(child))
                if inner:
                    self.blocks.append("\n".join("> " + line for line in inner.split("\n")))
            elif name == "img":
                alt = child.get("alt")
                if isinstance(alt, str) and alt.strip():
                    self.inline.append(f" {alt.strip()} ")
            elif name in _BLOCK_TAGS:
                self.flush()
                if name == "header" and child.find_parent(("article", "main", "section")):
                    # an article's own header: its headings, not its bylines and share links
                    for tag in child.find_all(tuple(_HEADINGS)):
                        heading = _heading(_HEADINGS[tag.name], tag.get_text(" "))
                        if heading:
                            self.blocks.append(heading)
                elif name != "header":
                    self.walk(child)
                self.flush()
            else:
                if name in ("td", "th", "tr"):  # table parts outside a table
                    self.inline.append(" ")
                self.walk(child)
        return self.blocks

    def list_block(self, node: Any, ordered: bool) -> str:
        from bs4 import Tag

        items = []
        number = 1
        for child in node.children:
            if not isinstance(child, Tag) or _dropped(child):
                continue
            if (child.name or "").lower() != "li":
                inner = _join_blocks(_HtmlWalker().walk(child)) if child.name else ""
                if inner:
                    items.append(inner)
                continue
            walker = _HtmlWalker()
            walker.walk(child)
            walker.flush()
            text = "\n".join(walker.blocks)
            marker = f"{number}. " if ordered else "- "
            number += 1
            if not text.strip():
                continue
            lines = text.split("\n")
            pad = " " * len(marker)
            items.append(marker + lines[0] + "".join("\n" + pad + line for line in lines[1:]))
        return "\n".join(items)

    def table_block(self, table: Any) -> str:
        rows = []
        caption = table.find("caption")
        for tr in table.find_all("tr"):
            if tr.find_parent("table") is not table:
                continue
            cells = [
                cell.get_text(" ")
                for cell in tr.find_all(("td", "th"))
                if cell.find_parent("tr") is tr
            ]
            rows.append(cells)
            if len(rows) > MAX_TABLE_ROWS:
                break
        table_md = markdown_table(rows)
        if caption is not None and _inline(caption.get_text(" ")):
            return _escape_line(_inline(caption.get_text(" "))) + "\n\n" + table_md
        return table_md


def _dropped(tag: Any) -> bool:
    name = (tag.name or "").lower()
    if name in _DROPPED_TAGS:
        return True
    attrs = tag.attrs or {}
    if str(attrs.get("role", "")).lower() in _DROPPED_ROLES:
        return True
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    return name == "header" and tag.find_parent(("article", "main", "section")) is None


def _parse_html(data: bytes | str) -> Any:
    from bs4 import BeautifulSoup

    try:
        return BeautifulSoup(data, "lxml")
    except Exception:
        return BeautifulSoup(data, "html.parser")


def html_to_markdown(data: bytes | str) -> tuple[str, str | None, dict]:
    """(Markdown, title, metadata) of an HTML document."""
    soup = _parse_html(data)
    title = None
    if soup.title is not None and soup.title.string:
        title = _inline(soup.title.string) or None
    metadata = {}
    for meta in soup.find_all("meta"):
        name = str(meta.get("name", "")).lower()
        content = meta.get("content")
        wanted = name in ("author", "description", "keywords") and isinstance(content, str)
        if wanted and _inline(content):
            metadata[name] = _inline(_CONTROL.sub("", content))
    html_tag = soup.find("html")
    if html_tag is not None and isinstance(html_tag.get("lang"), str):
        metadata["language"] = html_tag["lang"]
    root = soup.body or soup
    walker = _HtmlWalker()
    walker.walk(root)
    walker.flush()
    markdown = _join_blocks(walker.blocks)
    if title is None:
        first = re.search(r"(?m)^# (.+)$", markdown)
        title = first.group(1) if first else None
    return markdown, title, metadata


def _convert_html(data: bytes, limits: Limits) -> Conversion:
    markdown, title, metadata = html_to_markdown(data)
    return _finish(markdown, title, metadata)


# ---------------------------------------------------------------- e-mail


def _header(message: Any, name: str) -> str | None:
    try:
        value = message.get(name)
    except Exception:  # a header the parser cannot make sense of
        return None
    return _inline(_CONTROL.sub("", str(value))) if value is not None else None


def _part_text(part: Any) -> str:
    try:
        return part.get_content()
    except Exception:  # unknown charset or broken transfer encoding
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


def _convert_eml(data: bytes, limits: Limits) -> Conversion:
    message = email.message_from_bytes(data, policy=email.policy.default)
    if not message.keys():
        raise _Rejected("corrupt_file", "no e-mail headers")
    metadata: dict = {}
    for name in ("from", "to", "cc", "reply-to", "message-id", "subject"):
        value = _header(message, name)
        if value:
            metadata[name.replace("-", "_")] = value
    date = _header(message, "date")
    if date:
        try:
            metadata["date"] = email.utils.parsedate_to_datetime(date).isoformat()
        except (TypeError, ValueError, IndexError):
            metadata["date"] = date
    attachments = []
    for part in message.iter_attachments() if message.is_multipart() else []:
        name = part.get_filename()
        attachments.append(_inline(name) if name else part.get_content_type())
    if attachments:
        metadata["attachments"] = attachments
    body = message.get_body(preferencelist=("plain", "html"))
    markdown = ""
    if body is not None:
        text = _part_text(body)
        if body.get_content_type() == "text/html":
            markdown, _, _ = html_to_markdown(text)
        else:
            markdown = _escape_text(_clean(text))
    return _finish(markdown, metadata.get("subject"), metadata)


# ---------------------------------------------------------------- zip-based Office formats

_CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def check_zip(data: bytes, limits: Limits, kind: str) -> None:
    """Refuse an Office Open XML package before any parser inflates it: not a zip, too many
    entries, a declared uncompressed size over the limit, or an entry that inflates too far."""
    if data.startswith(_CFB_MAGIC):
        if "EncryptionInfo".encode("utf-16-le") in data:
            raise _Rejected("encrypted", f"{kind} is password-protected")
        raise _Rejected("corrupt_file", f"{kind}: a legacy binary Office file, not Office Open XML")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise _Rejected("corrupt_file", f"{kind} is not a readable zip package: {error}") from None
    if len(entries) > MAX_ZIP_ENTRIES:
        raise _Rejected("too_large", f"{kind} has {len(entries)} zip entries")
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_uncompressed_bytes:
        raise _Rejected(
            "too_large",
            f"{kind} inflates to {total / 1e6:,.0f} MB; the limit is "
            f"{limits.max_uncompressed_bytes / 1e6:,.0f} MB",
        )
    for entry in entries:
        if entry.file_size > 1_000_000:
            ratio = entry.file_size / max(entry.compress_size, 1)
            if ratio > limits.max_compression_ratio:
                raise _Rejected(
                    "too_large",
                    f"{kind} entry {entry.filename} inflates {ratio:,.0f}x "
                    f"(limit {limits.max_compression_ratio:,.0f}x)",
                )
    if "[Content_Types].xml" not in {entry.filename for entry in entries}:
        raise _Rejected("corrupt_file", f"{kind}: a zip file, but not an Office Open XML package")


# ---------------------------------------------------------------- Word

_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.I)


def _heading_level(paragraph: Any) -> int | None:
    try:
        style = paragraph.style
    except Exception:
        return None
    for _ in range(4):  # the style, or a style it is based on
        if style is None:
            return None
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 1
        match = _HEADING_STYLE.match(name)
        if match:
            return min(int(match.group(1)), 6)
        style = style.base_style
    return None


def _list_level(paragraph: Any) -> tuple[int, bool] | None:
    """(nesting level, numbered) of a list paragraph, else None."""
    ppr = paragraph._p.pPr
    numbered_style = False
    try:
        style_name = (paragraph.style.name or "").lower()
    except Exception:
        style_name = ""
    if style_name.startswith("list number"):
        numbered_style = True
    level = None
    if ppr is not None and ppr.numPr is not None:
        ilvl = ppr.numPr.ilvl
        level = int(ilvl.val) if ilvl is not None and ilvl.val is not None else 0
    elif style_name.startswith(("list bullet", "list number")):
        tail = style_name.rsplit(" ", 1)[-1]
        level = int(tail) - 1 if tail.isdigit() else 0
    if level is None:
        return None
    return max(0, min(level, 8)), numbered_style


def _docx_table(table: Any) -> str:
    rows = []
    for row in table.rows:
        cells = []
        previous = None
        for cell in row.cells:
            # a merged cell comes back once per grid column it spans
            cells.append("" if cell._tc is previous else cell.text)
            previous = cell._tc
        rows.append(cells)
        if len(rows) > MAX_TABLE_ROWS:
            break
    return markdown_table(rows)


def _open_office(opener, data: bytes, limits: Limits, kind: str):
    """Check the zip container of an Office file, then open it with `opener` (bytes stream)."""
    check_zip(data, limits, kind)
    try:
        return opener(io.BytesIO(data))
    except (KeyError, ValueError, zipfile.BadZipFile) as error:
        raise _Rejected("corrupt_file", f"{kind}: {type(error).__name__}: {error}") from None


def _convert_docx(data: bytes, limits: Limits) -> Conversion:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = _open_office(docx.Document, data, limits, "DOCX")
    blocks: list[str] = []
    list_lines: list[str] = []
    counters: dict[int, int] = {}

    def end_list() -> None:
        if list_lines:
            blocks.append("\n".join(list_lines))
            list_lines.clear()
            counters.clear()

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            end_list()
            blocks.append(_docx_table(item))
            continue
        if not isinstance(item, Paragraph):
            continue
        text = _clean(item.text).strip()
        if not text:
            continue
        level = _heading_level(item)
        if level is not None:
            end_list()
            blocks.append(_heading(level, text))
            continue
        listed = _list_level(item)
        if listed is not None:
            depth, numbered = listed
            counters[depth] = counters.get(depth, 0) + 1
            for deeper in [d for d in counters if d > depth]:
                del counters[deeper]
            marker = f"{counters[depth]}." if numbered else "-"
            line = _inline(text)
            list_lines.append("  " * depth + f"{marker} {line}")
            continue
        end_list()
        blocks.append(_escape_text(text))
    end_list()
    metadata = _properties(document.core_properties, _OOXML_PROPERTIES)
    return _finish(_join_blocks(blocks), metadata.get("title"), metadata)


# ---------------------------------------------------------------- PowerPoint


def _pptx_shapes(shapes: Any) -> list[Any]:
    def position(shape: Any) -> tuple[int, int]:
        return (shape.top or 0, shape.left or 0)

    try:
        return sorted(shapes, key=position)
    except Exception:
        return list(shapes)


def _pptx_text(shapes: Any, title_id: int | None, blocks: list[str]) -> None:
    from pptx.enum.shapes import MSO_SHAPE_TYPE, PP_PLACEHOLDER

    for shape in _pptx_shapes(shapes):
        if title_id is not None and shape.shape_id == title_id:
            continue
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            _pptx_text(shape.shapes, None, blocks)
            continue
        if getattr(shape, "has_table", False) and shape.has_table:
            rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
            blocks.append(markdown_table(rows[: MAX_TABLE_ROWS + 1]))
            continue
        if not getattr(shape, "has_text_frame", False) or not shape.has_text_frame:
            continue
        bulleted = False
        if shape.is_placeholder:
            try:
                kind = shape.placeholder_format.type
                bulleted = kind in (PP_PLACEHOLDER.BODY, PP_PLACEHOLDER.OBJECT)
            except Exception:
                bulleted = False
        lines = []
        for paragraph in shape.text_frame.paragraphs:
            text = _inline(_CONTROL.sub("", paragraph.text.replace("\x0b", " ")))
            if not text:
                continue
            if bulleted:
                lines.append("  " * min(paragraph.level, 8) + "- " + text)
            else:
                lines.append(_escape_line(text))
        if lines:
            blocks.append("\n".join(lines))


def _convert_pptx(data: bytes, limits: Limits) -> Conversion:
    import pptx

    presentation = _open_office(pptx.Presentation, data, limits, "PPTX")
    slides = list(presentation.slides)
    if len(slides) > limits.max_pages:
        raise _Rejected(
            "too_large", f"PPTX has {len(slides)} slides; the limit is {limits.max_pages}"
        )
    paged = _Paged()
    first_title = None
    for number, slide in enumerate(slides, start=1):
        title_shape = slide.shapes.title
        title = _inline(title_shape.text_frame.text) if title_shape is not None else ""
        if title and first_title is None:
            first_title = title
        blocks = [_heading(2, title or f"Slide {number}")]
        _pptx_text(slide.shapes, title_shape.shape_id if title_shape is not None else None, blocks)
        if slide.has_notes_slide:
            notes_frame = slide.notes_slide.notes_text_frame
            notes = _clean(notes_frame.text).strip() if notes_frame is not None else ""
            if notes:
                blocks.append(_escape_text("Speaker notes: " + notes))
        paged.add(_join_blocks(blocks))
    metadata = _properties(presentation.core_properties, _OOXML_PROPERTIES)
    metadata["slides"] = len(slides)
    title = metadata.get("title") or first_title
    return _finish(paged.markdown(), title, metadata, paged.pages, "slide", clean=False)


# ---------------------------------------------------------------- Excel


def _convert_xlsx(data: bytes, limits: Limits) -> Conversion:
    check_zip(data, limits, "XLSX")
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (KeyError, ValueError, TypeError, zipfile.BadZipFile) as error:
        raise _Rejected("corrupt_file", f"XLSX: {type(error).__name__}: {error}") from None
    blocks = []
    truncated = []
    try:
        for sheet in workbook.worksheets:
            rows: list[list[Any]] = []
            for row in sheet.iter_rows(values_only=True):
                if not any(v is not None and str(v).strip() for v in row):
                    continue
                if len(rows) > MAX_TABLE_ROWS:
                    truncated.append(sheet.title)
                    break
                rows.append(list(row[:MAX_TABLE_COLUMNS]))
            table = markdown_table(rows)
            if not table:
                continue
            blocks.append(_heading(2, sheet.title) + "\n\n" + table)
            if sheet.title in truncated:
                blocks.append(f"(rows after the first {MAX_TABLE_ROWS} are not converted)")
        metadata = _properties(workbook.properties, _OOXML_PROPERTIES)
        metadata["sheets"] = list(workbook.sheetnames)
    finally:
        workbook.close()
    if truncated:
        metadata["truncated"] = truncated
    return _finish(_join_blocks(blocks), metadata.get("title"), metadata)


# ---------------------------------------------------------------- PDF

_EDGE_LINES = 3  # lines at the top and at the bottom of a page that may be boilerplate
_DIGITS = re.compile(r"\d+")


def _edge(lines: list[str]) -> int:
    """How many lines at each end of a page may be running lines: three, fewer on a short
    page (a quarter of its lines, at least one)."""
    return max(1, min(_EDGE_LINES, len(lines) // 4))


def _exact_key(line: str) -> str:
    return " ".join(line.split()).lower()


def remove_running_lines(
    pages: list[list[str]], protected: frozenset[str] = frozenset()
) -> list[list[str]]:
    """Drop lines repeated at the top or the bottom (the first or last three lines, see _edge)
    of at least 60% of the pages with text, and of three pages at least: running headers and
    footers. Lines that differ only in their numbers ("Page 3 of 12") count as one, except lines in
    `protected` (headings: "Chapter 2" atop each page is content)."""
    with_text = [lines for lines in pages if lines]
    if len(with_text) < 3:
        return pages
    threshold = max(3, math.ceil(0.6 * len(with_text)))

    def keys(line: str) -> set[str]:
        exact = _exact_key(line)
        if _inline(line) in protected or not _DIGITS.search(exact):
            return {exact}
        return {exact, "\0" + _DIGITS.sub("#", exact)}

    top: Counter[str] = Counter()
    bottom: Counter[str] = Counter()
    for lines in with_text:
        edge = _edge(lines)
        top.update(set().union(*(keys(line) for line in lines[:edge])))
        bottom.update(set().union(*(keys(line) for line in lines[-edge:])))

    def repeated(line: str, counts: Counter[str]) -> bool:
        return any(counts[key] >= threshold for key in keys(line))

    cleaned = []
    for lines in pages:
        start, end = 0, len(lines)
        edge = _edge(lines) if lines else 0
        while start < min(end, edge) and repeated(lines[start], top):
            start += 1
        while end > max(start, len(lines) - edge) and repeated(lines[end - 1], bottom):
            end -= 1
        cleaned.append(lines[start:end])
    return cleaned


class _TableBlock(str):
    """A Markdown table found on a PDF page: passed through unescaped."""


def _pdf_page_lines(page: Any, sizes: Counter[float], fragments: dict[str, float]) -> list[str]:
    """The page's text lines, a table found on it as one _TableBlock; `sizes` counts
    characters per font size, `fragments` maps each line-sized piece of text to the largest
    size it was set in."""
    pieces: list[tuple[float, float, float, str]] = []

    def visit(text: str, cm: Any, tm: Any, font: Any, font_size: float) -> None:
        try:
            a = tm[0] * cm[0] + tm[1] * cm[2]
            b = tm[0] * cm[1] + tm[1] * cm[3]
            c = tm[2] * cm[0] + tm[3] * cm[2]
            d = tm[2] * cm[1] + tm[3] * cm[3]
            size = round(abs(font_size) * math.sqrt(abs(a * d - b * c)), 1)
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        except (TypeError, IndexError):
            return
        stripped = _inline(text)
        if stripped and size > 0:
            sizes[size] += len(stripped)
            if len(stripped) <= 200:
                fragments[stripped] = max(size, fragments.get(stripped, 0.0))
            if "\n" not in text.strip():
                pieces.append((float(x), float(y), size, stripped))

    text = page.extract_text(visitor_text=visit) or ""
    lines = [line.strip() for line in _clean(text).split("\n") if line.strip()]
    return _with_tables(lines, _pdf_tables(pieces))


def _pdf_tables(pieces: list[tuple[float, float, float, str]]) -> list[list[list[str]]]:
    """Tables among a page's text pieces (x, y, font size, text, in drawing order): runs of
    two or more consecutive rows — pieces on one baseline, split into cells where the gap to
    the previous piece is wider than a space could be — with the same number (two or more)
    of cells and the first cell in the same column."""
    rows: list[dict] = []
    for x, y, size, text in pieces:
        width = len(text) * size * 0.5  # generous: a false gap is worse than a missed one
        row = rows[-1] if rows else None
        if row is not None and abs(row["y"] - y) <= max(1.0, 0.2 * size) and x >= row["x"]:
            if x - row["end"] >= 0.6 * size:
                row["cells"].append(text)
            else:
                row["cells"][-1] += " " + text
            row["end"] = max(row["end"], x + width)
        else:
            rows.append({"x": x, "y": y, "size": size, "end": x + width, "cells": [text]})
    tables: list[list[list[str]]] = []
    run: list[dict] = []
    for row in [*rows, None]:
        fits = (
            row is not None
            and len(row["cells"]) >= 2
            and (
                not run
                or (
                    len(row["cells"]) == len(run[0]["cells"])
                    and row["y"] < run[-1]["y"]
                    and abs(row["x"] - run[0]["x"]) <= 2 * row["size"]
                )
            )
        )
        if fits:
            run.append(row)
            continue
        if len(run) >= 2:
            tables.append([found["cells"] for found in run])
        run = [row] if row is not None and len(row["cells"]) >= 2 else []
    return tables


def _with_tables(lines: list[str], tables: list[list[list[str]]]) -> list[str]:
    """`lines` with each table's lines (one per cell, or one per row) replaced by the table."""
    for table in tables:
        for wanted in ([cell for row in table for cell in row], [" ".join(row) for row in table]):
            keys = [_inline(part) for part in wanted]
            found = next(
                (
                    start
                    for start in range(len(lines) - len(keys) + 1)
                    if [_inline(line) for line in lines[start : start + len(keys)]] == keys
                ),
                None,
            )
            if found is not None:
                lines[found : found + len(keys)] = [_TableBlock(markdown_table(table))]
                break
    return lines


def _pdf_headings(sizes: Counter[float], fragments: dict[str, float]) -> dict[str, int]:
    """Text set clearly larger than the body font, with a level per size (largest = 1)."""
    if not sizes:
        return {}
    body = sizes.most_common(1)[0][0]
    large = sorted({s for s in fragments.values() if s >= body * 1.15}, reverse=True)[:3]
    levels = {size: level for level, size in enumerate(large, start=1)}
    return {
        text: levels[size]
        for text, size in fragments.items()
        if size in levels and len(text) <= 120 and any(ch.isalpha() for ch in text)
    }


def _convert_pdf(data: bytes, limits: Limits) -> Conversion:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    if b"%PDF-" not in data[:1024]:
        raise _Rejected("corrupt_file", "not a PDF file (no %PDF- header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except (DependencyError, NotImplementedError, FileNotDecryptedError):
                opened = 0
            if not opened:
                raise _Rejected("encrypted", "PDF is encrypted with a password")
        count = len(reader.pages)
    except FileNotDecryptedError:
        raise _Rejected("encrypted", "PDF is encrypted with a password") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise _Rejected("corrupt_file", f"PDF: {type(error).__name__}: {error}") from None
    if count > limits.max_pages:
        raise _Rejected("too_large", f"PDF has {count} pages; the limit is {limits.max_pages}")
    if count == 0:
        raise _Rejected("converts_to_nothing", "PDF has no pages")
    sizes: Counter[float] = Counter()
    fragments: dict[str, float] = {}
    page_lines = []
    for page in reader.pages:
        try:
            page_lines.append(_pdf_page_lines(page, sizes, fragments))
        except FileNotDecryptedError:
            raise _Rejected("encrypted", "PDF is encrypted with a password") from None
        except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError):
            page_lines.append([])  # one unreadable page does not lose the document
    if not any(page_lines):
        raise _Rejected(
            "no_text_layer",
            f"PDF has {count} page{'s' if count != 1 else ''} and no text layer",
        )
    headings = _pdf_headings(sizes, fragments)
    paged = _Paged()
    for lines in remove_running_lines(page_lines, frozenset(headings)):
        out = []
        for line in lines:
            if isinstance(line, _TableBlock):
                out.append(f"\n{line}\n")
                continue
            level = headings.get(_inline(line))
            out.append(_heading(level, line) if level else _escape_line(line))
        paged.add("\n".join(out))
    metadata: dict = {"pages": count}
    try:
        info = reader.metadata
    except Exception:  # a broken /Info dictionary: no properties
        info = None
    if info is not None:
        for key, name in (
            ("/Title", "title"),
            ("/Author", "author"),
            ("/Subject", "subject"),
            ("/Keywords", "keywords"),
            ("/Creator", "creator"),
            ("/Producer", "producer"),
        ):
            value = info.get(key)
            if isinstance(value, str) and _inline(_CONTROL.sub("", value)):
                metadata[name] = _inline(_CONTROL.sub("", value))
        for key, name in (("creation_date", "created"), ("modification_date", "modified")):
            try:
                value = getattr(info, key)
            except Exception:
                value = None
            if value is not None:
                metadata[name] = value.isoformat()
    return _finish(paged.markdown(), metadata.get("title"), metadata, paged.pages, "page", False)


# ---------------------------------------------------------------- dispatch

_CONVERTERS: dict[str, Callable[[bytes, Limits], Conversion]] = {
    ".pdf": _convert_pdf,
    ".docx": _convert_docx,
    ".pptx": _convert_pptx,
    ".html": _convert_html,
    ".htm": _convert_html,
    ".eml": _convert_eml,
    ".xlsx": _convert_xlsx,
    ".rst": _convert_rst,
    ".csv": _convert_csv,
    ".md": _convert_text,
    ".markdown": _convert_text,
    ".txt": _convert_text,
}


def extension(filename: str) -> str:
    return PurePath(filename.replace("\\", "/")).suffix.lower()


def _precheck(data: bytes, filename: str, limits: Limits) -> Conversion | None:
    """The rejects that need no parsing."""
    ext = extension(filename)
    if ext not in SUPPORTED_EXTENSIONS:
        what = f"{ext} file" if ext else "a file without an extension"
        return rejected("unsupported_format", f"{what}: not a supported document format")
    if len(data) == 0:
        return rejected("empty_file", "the file is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        return rejected(
            "too_large",
            f"{len(data) / 1e6:,.1f} MB; the limit is {limits.max_bytes / 1e6:,.1f} MB",
        )
    return None


def convert(data: bytes, filename: str, limits: Limits = DEFAULT_LIMITS) -> Conversion:
    """Convert one file in this process. Never raises for bad input: whatever a parser raises
    on a malformed file is a 'corrupt_file' reject (with the exception in `detail`)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    if not isinstance(filename, str):
        raise TypeError(f"filename must be str, not {type(filename).__name__}")
    data = bytes(data)
    early = _precheck(data, filename, limits)
    if early is not None:
        return early
    try:
        result = _CONVERTERS[extension(filename)](data, limits)
    except _Rejected as reject:
        return rejected(reject.reason, reject.detail)
    except MemoryError:
        return rejected("too_large", "ran out of memory converting the file")
    except RecursionError:
        return rejected("corrupt_file", "nesting too deep to convert")
    except Exception as error:  # a parser's error on malformed input
        return rejected("corrupt_file", f"{type(error).__name__}: {error}")
    if not (result.markdown or "").strip():
        ext = extension(filename)
        return rejected(
            "converts_to_nothing", f"{ext} file converts to no text", metadata=result.metadata
        )
    return result


# ---------------------------------------------------------------- isolated batches


def _in_process(data: bytes, filename: str) -> bool:
    """Converted by convert_many without a worker: pure-Python, linear-time formats."""
    ext = extension(filename)
    return ext in TEXT_EXTENSIONS or (ext in (".csv", ".rst") and len(data) <= IN_PROCESS_MAX_BYTES)


# What a worker calls for one file (tests point this at a converter that hangs or dies; it is
# sent to the worker by reference with every file).
_worker_convert: Callable[[bytes, str, Limits], Conversion] = convert

# A worker is a fresh interpreter running this, not a multiprocessing child: nothing of the
# caller (its __main__, threads, DuckDB or torch state) is inherited or re-imported.
_WORKER_COMMAND = "from rag_store.converters import _worker_main; _worker_main()"


def _worker_main() -> None:
    """A worker: caps its address space, then converts files sent on stdin until it closes.
    The protocol runs on the original stdout; fd 1 is pointed at stderr, so a library that
    prints cannot corrupt it."""
    from multiprocessing.connection import Connection

    requests = Connection(os.dup(0), writable=False)
    replies = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    max_memory_mb = int(os.environ.get("RAG_STORE_CONVERTER_MAX_MEMORY_MB", "0"))
    if max_memory_mb > 0:
        cap = max_memory_mb * 1024 * 1024
        try:
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                cap = min(cap, hard)
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        except (ValueError, OSError):
            pass
    try:
        # The converter to call, by reference: resolving it may import a module, which
        # happens here, before any file's deadline starts.
        function = requests.recv()
    except (EOFError, OSError):
        return
    replies.send("ready")
    while True:
        try:
            task = requests.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        index, data, filename, limits = task
        try:
            result = function(data, filename, limits)
        except MemoryError:
            result = rejected(
                "too_large", f"over the memory cap of {max_memory_mb} MB while converting"
            )
        try:
            replies.send((index, result))
        except MemoryError:
            replies.send((index, rejected("too_large", "conversion result too large")))


@dataclass
class _Worker:
    process: subprocess.Popen
    requests: Connection
    replies: Connection
    index: int | None = None
    deadline: float = 0.0


@dataclass
class _Pool:
    limits: Limits
    workers: list[_Worker] = field(default_factory=list)

    def start(self, function: Callable[[bytes, str, Limits], Conversion]) -> _Worker:
        env = dict(os.environ)
        env["RAG_STORE_CONVERTER_MAX_MEMORY_MB"] = str(self.limits.max_memory_mb)
        # The caller's import path, so the worker imports the same rag_store (and, in
        # tests, the module of a substituted converter).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_COMMAND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert process.stdin is not None and process.stdout is not None
        requests = Connection(os.dup(process.stdin.fileno()), readable=False)
        replies = Connection(os.dup(process.stdout.fileno()), writable=False)
        process.stdin.close()
        process.stdout.close()
        worker = _Worker(process, requests, replies)
        self.workers.append(worker)
        with contextlib.suppress(OSError, ValueError):  # if it died at once, its pipe says EOF
            requests.send(function)
        return worker

    def discard(self, worker: _Worker) -> None:
        self.workers.remove(worker)
        if worker.process.poll() is None:
            worker.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(5)
        worker.requests.close()
        worker.replies.close()

    def close(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError, ValueError):
                worker.requests.send(None)
        deadline = time.monotonic() + 2
        for worker in list(self.workers):
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            self.discard(worker)


def _worker_count(jobs: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(jobs, cpus))


def convert_many(
    items: list[tuple[bytes, str]], limits: Limits = DEFAULT_LIMITS
) -> list[Conversion]:
    """Convert a batch, in input order. Each file that needs a parser is converted in a
    worker process (one per core, each a fresh interpreter reused from file to file) under an
    address-space cap (RLIMIT_AS = max_memory_mb) and a wall-clock deadline (timeout_s, from
    the moment the file is handed over): a worker past its deadline is killed and its file is
    'conversion_timeout'; a worker that dies (out of memory in a C library, a crash in a
    parser) makes its file 'too_large'; either way a fresh worker takes the next file.
    Rejects that need no parsing, Markdown/text files, and CSV/RST files up to 1 MB are
    converted in this process (linear-time pure Python, nothing to hang)."""
    results: list[Conversion | None] = [None] * len(items)
    queue: list[int] = []
    for index, (data, filename) in enumerate(items):
        early = _precheck(bytes(data), filename, limits)
        if early is not None:
            results[index] = early
        elif _in_process(data, filename):
            results[index] = convert(data, filename, limits)
        else:
            queue.append(index)
    if queue:
        _run_pool(items, queue, results, limits)
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]


def _died(worker: _Worker, filename: str, limits: Limits) -> Conversion:
    try:
        code = worker.process.wait(5)
    except subprocess.TimeoutExpired:
        code = None
    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return rejected(
        "too_large",
        f"the converter process died ({how}) converting a {extension(filename)} file "
        f"(memory cap {limits.max_memory_mb} MB)",
    )


def _run_pool(
    items: list[tuple[bytes, str]],
    queue: list[int],
    results: list[Conversion | None],
    limits: Limits,
) -> None:
    pool = _Pool(limits)
    pending = list(reversed(queue))
    function = _worker_convert
    starting: dict[int, _Worker] = {}  # workers not yet "ready", by pid

    def start() -> None:
        worker = pool.start(function)
        # Interpreter start-up and imports do not count against a file's timeout.
        worker.deadline = time.monotonic() + max(60.0, limits.timeout_s)
        starting[worker.process.pid] = worker

    def dispatch(worker: _Worker) -> None:
        worker.index = None
        if not pending:
            return
        index = pending.pop()
        data, filename = items[index]
        try:
            worker.requests.send((index, bytes(data), filename, limits))
        except (OSError, ValueError):  # the worker is gone: the file goes to a fresh one
            pending.append(index)
            pool.discard(worker)
            start()
            return
        worker.index = index
        worker.deadline = time.monotonic() + limits.timeout_s

    try:
        for _ in range(_worker_count(len(queue))):
            start()
        while starting or any(worker.index is not None for worker in pool.workers):
            busy = list(starting.values()) + [w for w in pool.workers if w.index is not None]
            timeout = max(0.0, min(worker.deadline for worker in busy) - time.monotonic())
            ready = wait([worker.replies for worker in busy], timeout)
            now = time.monotonic()
            for worker in busy:
                is_starting = worker.process.pid in starting
                if worker.replies in ready:
                    try:
                        message = worker.replies.recv()
                    except (EOFError, OSError):
                        starting.pop(worker.process.pid, None)
                        if worker.index is not None:
                            results[worker.index] = _died(worker, items[worker.index][1], limits)
                        pool.discard(worker)
                        if pending and not is_starting:
                            start()
                        elif is_starting and not pool.workers and not starting:
                            raise RuntimeError(
                                "the document converter process does not start"
                            ) from None
                        continue
                    if is_starting:
                        del starting[worker.process.pid]
                    else:
                        index, result = message
                        results[index] = result
                    dispatch(worker)
                elif now >= worker.deadline:
                    starting.pop(worker.process.pid, None)
                    if worker.index is not None:
                        index = worker.index
                        results[index] = rejected(
                            "conversion_timeout",
                            f"a {extension(items[index][1])} file took longer than "
                            f"{limits.timeout_s:g} s to convert",
                        )
                    pool.discard(worker)
                    if pending:
                        start()
    finally:
        pool.close()


def converter_version() -> str:
    return CONVERTER_VERSION


# Why a file a relation row points at could not be read (before any conversion).
READ_ERRORS = ("file_not_found", "unreadable_file", "too_large")


def read_file(path: str, limits: Limits = DEFAULT_LIMITS) -> tuple[bytes | None, str | None]:
    """(content, None) for a regular file within `limits.max_bytes`, else (None, one of
    READ_ERRORS); never raises for a bad path."""
    try:
        size = os.stat(path).st_size
        if not os.path.isfile(path):
            return None, "file_not_found"
        if size > limits.max_bytes:
            return None, "too_large"
        with open(path, "rb") as handle:
            content = handle.read(limits.max_bytes + 1)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None, "file_not_found"
    except OSError:
        return None, "unreadable_file"
    if len(content) > limits.max_bytes:
        return None, "too_large"
    return content, None


def conversion_json(conversion: Conversion) -> str:
    """The Conversion as one JSON object (metadata included)."""
    return json.dumps(conversion.as_dict(), ensure_ascii=False, sort_keys=True)
