"""Real files of each supported type, generated in tests (nothing binary is committed)."""

from __future__ import annotations

import io
import json


def pdf_bytes(pages: list[str]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def docx_bytes(paragraphs: list[str]) -> bytes:
    import docx

    d = docx.Document()
    for p in paragraphs:
        d.add_paragraph(p)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def html_bytes(title: str, body: str) -> bytes:
    return (
        f"<html><head><title>{title}</title><style>.x{{color:red}}</style></head>"
        f"<body><script>var secret='do-not-index';</script><p>{body}</p></body></html>"
    ).encode()


def csv_bytes(rows: list[dict[str, str]]) -> bytes:
    import csv

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def json_bytes(obj: object) -> bytes:
    return json.dumps(obj).encode()
