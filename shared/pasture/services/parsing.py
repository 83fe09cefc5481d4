"""Turn an uploaded file into text sections, one parser per file type.

Every failure a user can cause (wrong type, corrupt or encrypted file, no text) surfaces as
`Invalid` with a short reason; no library exception or traceback escapes `parse_document`.
pypdf, python-docx and bs4 are imported inside their parsers because AWS Lambda imports this
module without the `local` extras installed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from pasture.domain.documents import ParsedDocument, ParsedSection
from pasture.domain.errors import Invalid, PastureError, PayloadTooLarge

_PARSER_BY_EXTENSION: dict[str, str] = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(sorted(_PARSER_BY_EXTENSION))

# A .docx is a zip: refuse archives that would inflate past this (zip bombs).
_MAX_DOCX_UNZIPPED = 512 * 1024 * 1024
_MAX_CAUSE_CHARS = 160


def parse_document(
    filename: str, stream: BinaryIO, *, max_bytes: int | None = None
) -> ParsedDocument:
    """Read `stream` fully and parse it according to `filename`'s extension (case-insensitive).

    Raises Invalid for an unsupported type, an unreadable file or one without text, and
    PayloadTooLarge when the stream holds more than `max_bytes`.
    """
    ext = os.path.splitext(os.path.basename(filename or ""))[1].lower()
    parser = _PARSER_BY_EXTENSION.get(ext)
    if parser is None:
        what = f"unsupported file type '{ext}'" if ext else "file has no extension"
        raise Invalid(f"{what} (supported: {', '.join(SUPPORTED_EXTENSIONS)})")

    data = _read(stream, max_bytes)
    if not data:
        raise Invalid("file is empty")

    try:
        if parser == "json":
            sections = _parse_json(data, lines=ext != ".json")
        else:
            sections = _PARSERS[parser](data)
    except PastureError:
        raise
    except RecursionError:
        raise Invalid(f"{parser} file is nested too deeply to read") from None
    except Exception as exc:  # the parser boundary: no library exception may escape
        raise Invalid(f"could not read {parser} file: {_cause(exc)}") from exc

    sections = [s for s in sections if s.text]
    if not sections:
        raise Invalid("no text found")
    return ParsedDocument(parser=parser, sections=tuple(sections))


# --------------------------------------------------------------------------- helpers


def _read(stream: BinaryIO, max_bytes: int | None) -> bytes:
    try:
        if max_bytes is None:
            return stream.read()
        data = stream.read(max_bytes + 1)  # one byte more tells "exactly at" from "over"
    except OSError as exc:
        raise Invalid(f"could not read the file: {_cause(exc)}") from exc
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"file is larger than the limit of {max_bytes} bytes")
    return data


def _cause(exc: BaseException) -> str:
    """One short line naming what went wrong, for a user-facing message."""
    msg = " ".join(str(exc).split())
    if not msg:
        text = type(exc).__name__
    elif type(exc).__module__.startswith("pypdf"):
        text = msg  # pypdf's messages say what is wrong; its class names add nothing
    else:
        text = f"{type(exc).__name__}: {msg}"
    if len(text) > _MAX_CAUSE_CHARS:
        text = text[: _MAX_CAUSE_CHARS - 3].rstrip() + "..."
    return text


_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    # UTF-32 before UTF-16: the UTF-32 LE BOM starts with the UTF-16 LE one.
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# C0 controls that never occur in real text (tab, newlines, form feed and ESC excluded).
_BINARY_CONTROLS = re.compile(r"[\x01-\x08\x0e-\x1a\x1c-\x1f]")


def _decode_text(data: bytes) -> str:
    """Bytes of a text file as str: UTF-8 (with or without BOM), UTF-16/32 with BOM, or
    cp1252 as a last resort for legacy Windows files; binary data is refused."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                raise Invalid("file is not UTF-8 text") from None
    if b"\x00" in data:
        raise Invalid("file is not UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")  # strict: its five undefined bytes still fail
        except UnicodeDecodeError:
            raise Invalid("file is not UTF-8 text") from None
    # Binary junk without NULs can still decode; real text has (almost) no C0 controls.
    if len(_BINARY_CONTROLS.findall(text, 0, 65536)) > 8:
        raise Invalid("file is not UTF-8 text")
    return text


_HSPACE = re.compile(r"[ \t\f\v\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _normalise(text: str, *, keep_indent: bool = False) -> str:
    """Collapse runs of spaces, strip line ends and keep paragraph breaks as exactly "\\n\\n".

    `keep_indent` leaves leading indentation alone (it carries meaning in markdown code and
    nested lists).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = []
    for line in text.split("\n"):
        if keep_indent:
            body = line.lstrip(" \t")
            indent = line[: len(line) - len(body)]
            lines.append(indent + _HSPACE.sub(" ", body).rstrip() if body.strip() else "")
        else:
            lines.append(_HSPACE.sub(" ", line).strip())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")


def _one_section(text: str, metadata: dict[str, Any] | None = None) -> list[ParsedSection]:
    return [ParsedSection(text=text, metadata=metadata or {})] if text.strip() else []


# --------------------------------------------------------------------------- text, markdown


def _parse_text(data: bytes) -> list[ParsedSection]:
    return _one_section(_normalise(_decode_text(data), keep_indent=True))


_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _parse_markdown(data: bytes) -> list[ParsedSection]:
    """Split at ATX (`# x`) and single-line setext headings outside fenced code blocks."""
    lines = _normalise(_decode_text(data), keep_indent=True).split("\n")
    # (heading text or None for the preamble, first line index)
    starts: list[tuple[str | None, int]] = [(None, 0)]
    fence: str | None = None
    para_lines = 0  # lines in the paragraph just before `line` (0 after a blank, heading, fence)
    for i, line in enumerate(lines):
        fence_match = _FENCE.match(line)
        if fence is not None:
            if (
                fence_match
                and fence_match.group(1)[0] == fence[0]
                and len(fence_match.group(1)) >= len(fence)
            ):
                fence = None
            continue
        if fence_match:
            fence, para_lines = fence_match.group(1), 0
            continue
        atx = _ATX_HEADING.match(line)
        if atx:
            starts.append(((atx.group(2) or "").strip(), i))
            para_lines = 0
            continue
        # Setext: "Title" then "=====" (or "-----"), only under a one-line paragraph so a
        # thematic break below a longer paragraph is not misread as a heading.
        if para_lines == 1 and _SETEXT_UNDERLINE.match(line):
            starts.append((lines[i - 1].strip(), i - 1))
            para_lines = 0
            continue
        para_lines = para_lines + 1 if line.strip() else 0

    sections: list[ParsedSection] = []
    pending = ""  # a heading with no body of its own is carried into the next section
    for n, (heading, first) in enumerate(starts):
        end = starts[n + 1][1] if n + 1 < len(starts) else len(lines)
        body = "\n".join(lines[first:end]).strip("\n")
        if not body.strip():
            continue
        text = f"{pending}\n\n{body}" if pending else body
        has_body = heading is None or any(
            ln.strip() for ln in lines[first + 1 : end] if not _SETEXT_UNDERLINE.match(ln)
        )
        if not has_body and n + 1 < len(starts):
            pending = text
            continue
        pending = ""
        sections.append(ParsedSection(text=text, metadata={"heading": heading} if heading else {}))
    return sections


# --------------------------------------------------------------------------- html

_DROP_TAGS = ("script", "style", "nav", "noscript", "template", "iframe", "svg", "head")
# Paragraph-like blocks get a blank line around them, line-like blocks a single newline.
_PARAGRAPH_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "dl",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "main",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "ul",
    ]
)
_LINE_TAGS = frozenset(["br", "caption", "dd", "div", "dt", "figcaption", "li", "option", "tr"])
_CELL_TAGS = frozenset(("td", "th"))


def _parse_html(data: bytes) -> list[ParsedSection]:
    from bs4 import BeautifulSoup

    # Bytes in: bs4 honours <meta charset> and BOMs when it decodes.
    soup = BeautifulSoup(data, "lxml")
    title = ""
    if soup.title is not None:
        title = " ".join(soup.title.get_text(" ").split())
    for tag in soup.find_all(_DROP_TAGS):
        if not tag.decomposed:  # a <script> inside a dropped <nav> is already gone
            tag.decompose()
    for tag in soup.find_all(True):
        name = tag.name
        if name in _PARAGRAPH_TAGS:
            tag.insert_before("\n\n")
            tag.insert_after("\n\n")
        elif name in _LINE_TAGS:
            tag.insert_before("\n")
            tag.insert_after("\n")
        elif name in _CELL_TAGS:
            tag.insert_after(" | ")
    root = soup.body or soup
    text = root.get_text()
    # Trailing cell separators at line ends are noise.
    text = re.sub(r"[ \t]*\|[ \t]*(?=\n|$)", "", text)
    return _one_section(_normalise(text), {"title": title} if title else {})


# --------------------------------------------------------------------------- pdf


def _parse_pdf(data: bytes) -> list[ParsedSection]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    if b"%PDF-" not in data[:1024]:
        raise Invalid("corrupt PDF: not a PDF file (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        # pypdf already tried the empty user password (owner-only protection reads fine).
        if reader.is_encrypted and not reader.decrypt(""):
            raise Invalid("PDF is encrypted")
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            text = _normalise(page.extract_text() or "")
            if text:
                sections.append(ParsedSection(text=text, metadata={"page": number}))
    except FileNotDecryptedError:
        raise Invalid("PDF is encrypted") from None
    except DependencyError as exc:
        if "AES" in str(exc) or "crypt" in str(exc).lower():
            raise Invalid("PDF is encrypted with AES, which this server cannot decrypt") from None
        raise Invalid(f"corrupt PDF: {_cause(exc)}") from exc
    except PastureError:
        raise
    except Exception as exc:
        truncated = b"%%EOF" not in data[-2048:]
        hint = "file appears truncated; " if truncated else ""
        raise Invalid(f"corrupt PDF: {hint}{_cause(exc)}") from exc
    if not sections:
        raise Invalid("PDF has no extractable text (scanned images?)")
    return sections


# --------------------------------------------------------------------------- docx


def _parse_docx(data: bytes) -> list[ParsedSection]:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise Invalid("not a valid .docx file (not a ZIP archive)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            unzipped = sum(info.file_size for info in archive.infolist())
        if "[Content_Types].xml" not in names:
            raise Invalid("not a valid .docx file (a ZIP archive, but not a Word document)")
        if unzipped > _MAX_DOCX_UNZIPPED:
            raise Invalid("not a valid .docx file (unpacks to more than 512 MB)")

        import docx
        from docx.table import Table

        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                blocks.append("\n".join(_docx_table_rows(item)))
            else:
                blocks.append(item.text)  # headings are paragraphs with a Heading style
    except PastureError:
        raise
    except Exception as exc:
        raise Invalid(f"not a valid .docx file ({_cause(exc)})") from exc
    return _one_section(_normalise("\n\n".join(b for b in blocks if b.strip())))


def _docx_table_rows(table: Any) -> Iterator[str]:
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            # A horizontally merged cell is returned once per grid column it spans.
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            yield " | ".join(cells)


# --------------------------------------------------------------------------- csv


_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?%?$")


def _parse_csv(data: bytes) -> list[ParsedSection]:
    text = _decode_text(data)
    sample = text[: 16 * 1024]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel  # a single column, or too irregular to sniff: assume commas
    try:
        rows = [
            r
            for r in csv.reader(io.StringIO(text, newline=""), dialect)
            if any(c.strip() for c in r)
        ]
    except csv.Error as exc:
        raise Invalid(f"invalid CSV: {exc}") from None
    if not rows:
        return []
    # Sniffer.has_header is unreliable on all-text tables; a first row without a single
    # number is taken as the header, which is what almost every real CSV has.
    first = [c.strip() for c in rows[0]]
    has_header = len(rows) > 1 and not any(_NUMBER.match(c) for c in first if c)
    lines: list[str] = []
    if has_header:
        data_rows = rows[1:]
        for row in data_rows:
            parts = []
            for i, value in enumerate(row):
                value = " ".join(value.split())
                if not value:
                    continue  # "key: " with nothing after it only costs tokens
                key = first[i] if i < len(first) and first[i] else f"column {i + 1}"
                parts.append(f"{key}: {value}")
            lines.append("; ".join(parts))
    else:
        data_rows = rows
        lines = ["; ".join(" ".join(v.split()) for v in row if v.strip()) for row in rows]
    return _one_section("\n".join(lines), {"rows": len(data_rows)})


# --------------------------------------------------------------------------- json


def _parse_json(data: bytes, *, lines: bool) -> list[ParsedSection]:
    text = _decode_text(data)
    if not lines:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Invalid(
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        return _one_section("\n".join(_flatten(value)))
    # JSON lines: one record per line; records are separated by a blank line so the chunker
    # prefers to keep each record whole.
    records: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise Invalid(f"invalid JSON at line {lineno} column {exc.colno}: {exc.msg}") from None
        records.append("\n".join(_flatten(value)))
    return _one_section("\n\n".join(r for r in records if r), {"records": len(records)})


def _flatten(value: Any) -> Iterator[str]:
    """`{"a": {"b": [1, 2]}}` -> "a.b[0]: 1", "a.b[1]: 2"; iterative so depth cannot overflow."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict) and node:
            children = [(f"{path}.{k}" if path else str(k), v) for k, v in node.items()]
            stack.extend(reversed(children))
        elif isinstance(node, list) and node:
            stack.extend(reversed([(f"{path}[{i}]", v) for i, v in enumerate(node)]))
        else:
            rendered = _scalar(node)
            yield f"{path}: {rendered}" if path else rendered


def _scalar(node: Any) -> str:
    if isinstance(node, str):
        return " ".join(node.split())  # one value per line keeps every line self-describing
    return json.dumps(node, ensure_ascii=False)  # null, true, 1.5, {} and []


_PARSERS: dict[str, Callable[[bytes], list[ParsedSection]]] = {
    "text": _parse_text,
    "markdown": _parse_markdown,
    "html": _parse_html,
    "pdf": _parse_pdf,
    "docx": _parse_docx,
    "csv": _parse_csv,
}
