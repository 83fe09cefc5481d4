"""Every parser on a real file built in the test, and every way a file can be refused."""

from __future__ import annotations

import io
import json
import os
import random
import zipfile
from typing import Any

import pytest

from pasture.domain.documents import ParsedDocument
from pasture.domain.errors import Invalid, PayloadTooLarge
from pasture.services.parsing import SUPPORTED_EXTENSIONS, parse_document


def parse(name: str, data: bytes, **kwargs: int) -> ParsedDocument:
    return parse_document(name, io.BytesIO(data), **kwargs)


def refused(name: str, data: bytes) -> str:
    with pytest.raises(Invalid) as info:
        parse(name, data)
    message = info.value.message
    assert "Traceback" not in message and len(message) < 300
    return message


def make_pdf(*pages: str, user_password: str | None = None) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    if user_password is not None:
        pdf.set_encryption(owner_password="owner-secret", user_password=user_password)
    return bytes(pdf.output())


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Quarterly Report", level=1)
    document.add_paragraph("Revenue   grew strongly this quarter.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("Region", "Sales"), ("North", "42")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_heading("Outlook", level=2)
    document.add_paragraph("Next quarter looks similar.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# --------------------------------------------------------------------------- happy paths


def test_supported_extensions_are_listed() -> None:
    assert set(SUPPORTED_EXTENSIONS) >= {
        ".txt",
        ".md",
        ".markdown",
        ".html",
        ".htm",
        ".pdf",
        ".docx",
        ".csv",
        ".json",
        ".jsonl",
        ".ndjson",
    }


def test_pdf_one_section_per_page() -> None:
    doc = parse("Report.PDF", make_pdf("Alpha page about llamas.", "Beta page about alpacas."))
    assert doc.parser == "pdf"
    assert [s.metadata for s in doc.sections] == [{"page": 1}, {"page": 2}]
    assert "llamas" in doc.sections[0].text and "alpacas" in doc.sections[1].text
    assert "alpacas" not in doc.sections[0].text


def test_pdf_with_empty_user_password_is_read() -> None:
    # Owner-only protection (printing/copying rights) still lets anyone read the text.
    doc = parse("a.pdf", make_pdf("Open to all readers.", user_password=""))
    assert "Open to all readers." in doc.text


def test_docx_paragraphs_headings_and_tables_in_order() -> None:
    doc = parse("report.docx", make_docx())
    assert doc.parser == "docx"
    text = doc.text
    assert "Quarterly Report" in text and "Outlook" in text
    assert "Revenue grew strongly this quarter." in text  # whitespace collapsed
    assert "Region | Sales\nNorth | 42" in text
    assert text.index("Quarterly Report") < text.index("Region") < text.index("Outlook")


def test_html_drops_scripts_styles_and_navigation() -> None:
    html = b"""<!doctype html><html><head><title> The  Farm </title>
    <style>body { color: red }</style><script>var secret = "hidden";</script></head>
    <body><nav><a href="/">Home menu</a></nav><noscript>Enable JS</noscript>
    <h1>Welcome</h1><p>Llamas are <b>friendly</b>.</p><div>First</div><div>Second</div>
    <ul><li>hay</li><li>water</li></ul>
    <table><tr><th>Name</th><th>Age</th></tr><tr><td>Dolly</td><td>4</td></tr></table>
    <!-- a comment --></body></html>"""
    doc = parse("page.htm", html)
    assert doc.parser == "html"
    assert doc.sections[0].metadata == {"title": "The Farm"}
    text = doc.text
    for gone in ("color: red", "secret", "Home menu", "Enable JS", "a comment"):
        assert gone not in text
    assert "Llamas are friendly." in text
    lines = text.split("\n")
    for line in ("Welcome", "First", "Second", "hay", "water", "Name | Age", "Dolly | 4"):
        assert line in lines


def test_csv_rows_rendered_with_header_names() -> None:
    data = b'name,age,city\r\nAnn,31,Paris\r\nBob,,"London, UK"\r\n'
    doc = parse("people.csv", data)
    assert doc.parser == "csv"
    assert doc.sections[0].metadata == {"rows": 2}
    assert doc.text == "name: Ann; age: 31; city: Paris\nname: Bob; city: London, UK"


def test_csv_dialect_is_sniffed() -> None:
    doc = parse("x.csv", b"product;price\nhay;3,50\noats;2,10\n")
    assert doc.text == "product: hay; price: 3,50\nproduct: oats; price: 2,10"


def test_csv_without_header_keeps_values() -> None:
    doc = parse("x.csv", b"1,2,3\n4,5,6\n")
    assert doc.text == "1; 2; 3\n4; 5; 6"
    assert doc.sections[0].metadata == {"rows": 2}


def test_json_is_flattened_to_searchable_paths() -> None:
    value: dict[str, Any] = {
        "farm": {"name": "Green  Acres", "animals": [{"kind": "llama", "n": 3}, "goat"]},
        "open": True,
        "owner": None,
    }
    doc = parse("farm.json", json.dumps(value).encode())
    assert doc.parser == "json"
    assert doc.text.split("\n") == [
        "farm.name: Green Acres",
        "farm.animals[0].kind: llama",
        "farm.animals[0].n: 3",
        "farm.animals[1]: goat",
        "open: true",
        "owner: null",
    ]


def test_json_lines() -> None:
    doc = parse("log.jsonl", b'{"a": 1}\n\n{"b": {"c": "x"}}\n')
    assert doc.parser == "json"
    assert doc.text == "a: 1\n\nb.c: x"
    assert doc.sections[0].metadata == {"records": 2}


def test_markdown_sections_at_headings() -> None:
    md = (
        "Intro line.\n\n# Getting started\nInstall it.\n\n## Usage\nRun it.\n"
        "```sh\n# not a heading\n```\n\nFAQ\n===\nAsk away.\n"
    )
    doc = parse("README.md", md.encode())
    assert doc.parser == "markdown"
    assert [s.metadata for s in doc.sections] == [
        {},
        {"heading": "Getting started"},
        {"heading": "Usage"},
        {"heading": "FAQ"},
    ]
    assert doc.sections[1].text == "# Getting started\nInstall it."
    assert "# not a heading" in doc.sections[2].text
    assert doc.sections[3].text == "FAQ\n===\nAsk away."


def test_markdown_heading_without_body_joins_the_next_section() -> None:
    doc = parse("a.markdown", b"# Guide\n## Part one\nBody.\n")
    assert len(doc.sections) == 1
    assert doc.sections[0].text == "# Guide\n\n## Part one\nBody."
    assert doc.sections[0].metadata == {"heading": "Part one"}


@pytest.mark.parametrize(
    "data",
    [
        "Caf\u00e9  au lait\r\n\r\n\r\n\r\nsecond   para".encode("utf-8-sig"),
        "Caf\u00e9  au lait\r\n\r\n\r\n\r\nsecond   para".encode("utf-16"),
        "Caf\u00e9  au lait\n\nsecond para".encode("cp1252"),
        "Caf\u00e9  au lait\n\nsecond para".encode(),
    ],
    ids=["utf8-bom", "utf16-bom", "cp1252", "utf8"],
)
def test_text_encodings_and_whitespace(data: bytes) -> None:
    doc = parse("notes.TXT", data)
    assert doc.parser == "text"
    assert doc.text == "Caf\u00e9 au lait\n\nsecond para"
    assert len(doc.sections) == 1


def test_max_bytes() -> None:
    assert parse("a.txt", b"12345", max_bytes=5).text == "12345"
    with pytest.raises(PayloadTooLarge):
        parse("a.txt", b"123456", max_bytes=5)


# --------------------------------------------------------------------------- refusals


def test_unsupported_extension() -> None:
    message = refused("setup.exe", b"MZ\x90\x00")
    assert message.startswith("unsupported file type '.exe'")
    assert ".pdf" in message and ".docx" in message
    assert refused("Makefile", b"all:").startswith("file has no extension")


def test_random_bytes_named_pdf() -> None:
    junk = random.Random(1).randbytes(4000)
    assert refused("scan.pdf", junk).startswith("corrupt PDF: not a PDF file")


def test_truncated_pdf() -> None:
    data = make_pdf("Some text on a page.", "More text.")
    message = refused("cut.pdf", data[: len(data) // 2])
    assert message.startswith("corrupt PDF: file appears truncated")


def test_encrypted_pdf() -> None:
    assert refused("secret.pdf", make_pdf("Top secret.", user_password="pw")) == (
        "PDF is encrypted"
    )


def test_pdf_without_text() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    message = refused("scan.pdf", bytes(pdf.output()))
    assert message == "PDF has no extractable text (scanned images?)"


def test_zip_that_is_not_a_docx() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    message = refused("fake.docx", out.getvalue())
    assert message == "not a valid .docx file (a ZIP archive, but not a Word document)"


def test_docx_with_broken_parts() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<not xml")
    assert refused("broken.docx", out.getvalue()).startswith("not a valid .docx file (")


def test_random_bytes_named_docx() -> None:
    junk = random.Random(2).randbytes(3000)
    assert refused("x.docx", junk) == "not a valid .docx file (not a ZIP archive)"


def test_invalid_json_reports_position() -> None:
    message = refused("bad.json", b'{\n  "a": 1,\n  "b": \n}')
    assert message.startswith("invalid JSON at line 4 column 1:")
    message = refused("bad.ndjson", b'{"ok": 1}\n{"ok": 2}\n{oops}\n')
    assert message.startswith("invalid JSON at line 3 column 2:")


def test_binary_junk_named_txt() -> None:
    assert refused("data.txt", os.urandom(2048) + b"\x00") == "file is not UTF-8 text"
    # No NUL bytes, but control characters no text file contains.
    assert refused("data.txt", bytes(range(1, 32)) * 20) == "file is not UTF-8 text"


def test_invalid_utf16() -> None:
    assert refused("a.txt", b"\xff\xfe\x00\xd8") == "file is not UTF-8 text"


@pytest.mark.parametrize("name", ["empty.txt", "empty.pdf", "empty.docx", "empty.json"])
def test_empty_file(name: str) -> None:
    assert refused(name, b"") == "file is empty"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("blank.txt", b"  \n\n\t \n"),
        ("blank.md", b"\n\n"),
        ("blank.html", b"<html><body><script>x()</script></body></html>"),
        ("blank.csv", b",,\n,,\n"),
    ],
)
def test_no_text(name: str, data: bytes) -> None:
    assert refused(name, data) == "no text found"


def test_deeply_nested_json_is_refused_cleanly() -> None:
    message = refused("deep.json", b"[" * 100_000 + b"]" * 100_000)
    assert "nested too deeply" in message
