"""Document conversion: every format's Markdown structure, page offsets, metadata, every reject
reason, and the isolation of convert_many (timeouts, dying workers). Fixtures are written by
the formats' own libraries inside the tests."""

from __future__ import annotations

import io
import json
import os
import time
import unicodedata
import zipfile
from email.message import EmailMessage

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_store import converters
from rag_store.chunking import split_sections
from rag_store.converters import (
    CONVERTER_VERSION,
    DEFAULT_LIMITS,
    REJECT_REASONS,
    SUPPORTED_EXTENSIONS,
    Conversion,
    Limits,
    convert,
    convert_many,
)
from rag_store.dbt_plugin import register_udfs

# ---------------------------------------------------------------- fixture writers


def pdf_bytes(pages: list[list[tuple[int, str]]], title="Probe manual", author="Ada Lovelace"):
    """A PDF with a text layer: per page, (font size, line) pairs from the top, plus a running
    header and a "Page N of M" footer on every page."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    pdf.setTitle(title)
    pdf.setAuthor(author)
    pdf.setSubject("water quality")
    for number, lines in enumerate(pages, start=1):
        pdf.setFont("Helvetica", 8)
        pdf.drawString(72, 810, "ACME Water Lab - internal use only")
        y = 760
        for size, line in lines:
            pdf.setFont("Helvetica-Bold" if size > 11 else "Helvetica", size)
            pdf.drawString(72, y, line)
            y -= size + 8
        pdf.setFont("Helvetica", 8)
        pdf.drawString(72, 30, f"Page {number} of {len(pages)}")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def image_only_pdf(page_count=2) -> bytes:
    from PIL import Image
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    image = Image.new("RGB", (60, 20), (200, 30, 30))
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    for _ in range(page_count):
        pdf.drawImage(ImageReader(image), 72, 600, width=300, height=100)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def blank_pdf(page_count: int) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(page_count):
        writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def encrypted(
    data: bytes, user_password: str, owner_password: str = "owner", algorithm: str = "RC4-128"
) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password, owner_password, algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


MANUAL_PAGES = [
    [
        (20, "Probe Manual"),
        (11, "This manual covers the dissolved oxygen probe."),
        (11, "Read it before the first measurement."),
    ],
    [
        (15, "Calibration"),
        (11, "Calibrate the probe every Monday with fresh buffers."),
        (11, "Use buffers of pH 4, 7 and 10 at room temperature."),
        (11, "# this line only looks like a heading"),
    ],
    [
        (15, "Storage"),
        (11, "Store the probe wet, in the storage solution."),
        (11, "Never let the membrane dry out."),
    ],
    [
        (15, "Disposal"),
        (11, "Return spent probes to the supplier."),
    ],
]


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = "Travel policy"
    document.core_properties.author = "HR Team"
    document.core_properties.keywords = "travel, expenses"
    document.add_heading("Travel policy", 0)
    document.add_paragraph("This policy applies to every employee.")
    document.add_heading("Booking", 1)
    document.add_paragraph("Book through the portal.")
    document.add_paragraph("Trains under six hours", style="List Bullet")
    document.add_paragraph("Economy class flights", style="List Bullet")
    document.add_paragraph("Window seat if available", style="List Bullet 2")
    document.add_heading("Allowances", 2)
    table = document.add_table(rows=3, cols=2)
    values_by_row = [("City", "Per day"), ("Paris", "120"), ("Oslo", "150|x")]
    for row, values in zip(table.rows, values_by_row, strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_paragraph("Approve", style="List Number")
    document.add_paragraph("Pay", style="List Number")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pptx_bytes(slides=3) -> bytes:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Quarterly roadmap"
    body = first.placeholders[1].text_frame
    body.text = "Ship the probe v2"
    sub = body.add_paragraph()
    sub.text = "firmware first"
    sub.level = 1
    first.notes_slide.notes_text_frame.text = "Mention the delay."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Budget"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    cells = [(0, 0), (0, 1), (1, 0), (1, 1)]
    for (r, c), value in zip(cells, ["Item", "EUR", "Probes", "900"], strict=True):
        table.cell(r, c).text = value
    for _ in range(slides - 2):
        blank = deck.slides.add_slide(deck.slide_layouts[6])
        box = blank.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1))
        box.text_frame.text = "A slide without a title."
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def xlsx_bytes(rows=3) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Prices"
    sheet.append(["Product", "Price", "Since"])
    import datetime as dt

    for i in range(rows):
        sheet.append([f"probe {i}", 10.5 + i, dt.date(2026, 1, 1 + i % 28)])
    other = workbook.create_sheet("Contacts")
    other.append(["Name", "E-mail"])
    other.append(["Ada", "ada@example.com"])
    workbook.create_sheet("Empty")
    workbook.properties.creator = "Finance"
    workbook.properties.title = "Price list"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


HTML_PAGE = b"""<!doctype html>
<html lang="en"><head><title>Probe FAQ | ACME</title>
<meta name="author" content="Support Team"><style>p {color: red}</style>
<script>var tracking = "never in the text";</script></head>
<body>
<header><a href="/">ACME home</a> <nav><a href="/a">Products</a></nav></header>
<div role="navigation">Breadcrumbs: Home / FAQ</div>
<main><article>
<header><h1>Probe FAQ</h1><p>Posted by the site bot</p></header>
<p>Answers to <b>common</b> questions.<br>Second line.</p>
<h2>Cleaning</h2><p># not a heading in the source</p>
<ul><li>Rinse it<ul><li>with water</li></ul></li><li>Dry it</li></ul>
<ol><li>Open</li><li>Close</li></ol>
<h3>Prices</h3>
<table><caption>Price list</caption>
<tr><th>Item</th><th>Price</th></tr><tr><td>Probe</td><td>90 | 100</td></tr></table>
<pre>```
# code, not a heading
```</pre>
<aside>Related articles you may like</aside>
<form><input name="q"> Search the site</form>
</article></main>
<footer>Copyright ACME. Imprint.</footer>
</body></html>"""


def eml_bytes(html_only=False) -> bytes:
    message = EmailMessage()
    message["Subject"] = "Probe recall"
    message["From"] = "Quality <quality@example.com>"
    message["To"] = "support@example.com"
    message["Date"] = "Tue, 01 Dec 2026 09:30:00 +0100"
    if html_only:
        message.set_content("<h1>Recall</h1><p>Return batch 42.</p>", subtype="html")
    else:
        message.set_content("Please return batch 42.\n\n# not a heading\n")
        message.add_alternative("<p>HTML version</p>", subtype="html")
        message.add_attachment(
            b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="recall.pdf"
        )
    return message.as_bytes()


def zip_package(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def page_text(result: Conversion, number: int) -> str:
    """The Markdown of page/slide `number` (1-based)."""
    bounds = [*result.pages, len(result.markdown)]
    return result.markdown[bounds[number - 1] : bounds[number]]


def assert_clean(result: Conversion) -> None:
    """What every successful conversion guarantees."""
    assert result.reject_reason is None and result.detail is None
    assert result.markdown and result.markdown == result.markdown.strip()
    assert unicodedata.normalize("NFC", result.markdown) == result.markdown
    assert "\r" not in result.markdown
    json.dumps(result.metadata)
    if result.pages:
        assert result.pages[0] == 0
        assert result.pages == sorted(result.pages)
        assert result.pages[-1] <= len(result.markdown)


def assert_rejected(result: Conversion, reason: str) -> None:
    assert result.reject_reason == reason, (result.reject_reason, result.detail)
    assert result.markdown is None and result.pages == []
    assert result.detail and "\n" not in result.detail


# ---------------------------------------------------------------- interface


def test_interface_constants():
    assert CONVERTER_VERSION.isdigit()  # bumped with every change of output
    assert {".pdf", ".docx", ".pptx", ".html", ".htm", ".eml", ".xlsx", ".rst", ".csv"} <= (
        SUPPORTED_EXTENSIONS
    )
    assert {".md", ".markdown", ".txt"} <= SUPPORTED_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in SUPPORTED_EXTENSIONS)
    assert DEFAULT_LIMITS.max_bytes == 50 * 1024 * 1024
    assert DEFAULT_LIMITS.max_pages == 1000
    assert DEFAULT_LIMITS.timeout_s == 60
    assert DEFAULT_LIMITS.max_memory_mb == 1024
    assert DEFAULT_LIMITS.max_uncompressed_bytes == 200 * 1024 * 1024


def test_programming_errors_raise():
    with pytest.raises(TypeError):
        convert("text", "a.txt")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        convert(b"text", None)  # type: ignore[arg-type]


# ---------------------------------------------------------------- PDF


def test_pdf_pages_headings_and_running_lines():
    result = convert(pdf_bytes(MANUAL_PAGES), "manual.PDF")
    assert_clean(result)
    assert result.page_kind == "page" and len(result.pages) == 4
    assert result.title == "Probe manual"
    assert result.metadata["author"] == "Ada Lovelace"
    assert result.metadata["subject"] == "water quality"
    assert result.metadata["pages"] == 4
    # The text of page N starts at pages[N-1].
    assert page_text(result, 1).startswith("# Probe Manual\n")
    assert page_text(result, 2).startswith("## Calibration\nCalibrate the probe every Monday")
    assert page_text(result, 3).startswith("## Storage\n")
    assert page_text(result, 4).strip() == "## Disposal\nReturn spent probes to the supplier."
    # Running header and "Page N of 4" footers are gone, body text is not.
    assert "ACME Water Lab" not in result.markdown
    assert "Page 2 of 4" not in result.markdown
    assert "Use buffers of pH 4, 7 and 10" in result.markdown
    # A body line that looks like a heading stays text.
    assert "\\# this line only looks like a heading" in result.markdown
    paths = [s.heading_path for s in split_sections(result.markdown)]
    assert paths == [("Probe Manual",), ("Probe Manual", "Calibration"), *paths[2:]]
    assert ("Probe Manual", "Disposal") in paths


def test_running_lines_need_most_pages():
    pages = [["Header", "alpha", "Page 1"], ["Header", "beta", "Page 2"], ["gamma", "delta"]]
    # 2 of 3 pages is under the 3-page minimum: nothing is removed.
    assert converters.remove_running_lines(pages) == pages
    many = [["Confidential", f"text {i}", f"- {i} -"] for i in range(1, 6)] + [["last page"]]
    cleaned = converters.remove_running_lines(many)
    assert cleaned[0] == ["text 1"] and cleaned[-1] == ["last page"]
    # A heading repeated with another number on every page is content.
    chapters = [[f"Chapter {i}", "body"] for i in range(1, 5)]
    kept = converters.remove_running_lines(chapters, frozenset(f"Chapter {i}" for i in range(5)))
    assert kept == [[f"Chapter {i}"] for i in range(1, 5)]


def test_pdf_without_text_layer():
    result = convert(image_only_pdf(2), "scan.pdf")
    assert_rejected(result, "no_text_layer")
    assert result.detail == "PDF has 2 pages and no text layer"


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_pdf_encrypted_and_openable_with_empty_password(algorithm):
    data = pdf_bytes(MANUAL_PAGES[:2])
    locked = convert(encrypted(data, "secret", algorithm=algorithm), "locked.pdf")
    assert_rejected(locked, "encrypted")
    # Only an owner password: readers open it without asking, so do we (AES needs the
    # cryptography package, a dependency).
    opened = convert(encrypted(data, "", algorithm=algorithm), "owner-only.pdf")
    assert_clean(opened)
    assert "Calibrate the probe" in opened.markdown


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.7\n%garbage that is no PDF at all\n", b"<html>not a pdf</html>", b"\x00" * 100],
)
def test_pdf_corrupt(data):
    assert_rejected(convert(data, "broken.pdf"), "corrupt_file")


def test_pdf_truncated_is_a_reject_not_an_error():
    data = pdf_bytes(MANUAL_PAGES)
    for cut in (len(data) // 3, len(data) // 2, len(data) - 200):
        result = convert(data[:cut], "cut.pdf")
        # pypdf may recover some pages of a cut file; a result is either text or a reject
        assert result.reject_reason in (None, "corrupt_file", "no_text_layer")


def test_pdf_over_the_page_limit_is_too_large():
    data = blank_pdf(2000)
    started = time.monotonic()
    result = convert(data, "huge.pdf")
    assert_rejected(result, "too_large")
    assert "2000 pages" in result.detail
    assert time.monotonic() - started < 30
    assert_rejected(convert(pdf_bytes(MANUAL_PAGES), "m.pdf", Limits(max_pages=3)), "too_large")


# ---------------------------------------------------------------- Word


def test_docx_headings_lists_tables_and_properties():
    result = convert(docx_bytes(), "policy.docx")
    assert_clean(result)
    assert result.pages == [] and result.page_kind is None
    assert result.title == "Travel policy"
    assert result.metadata["author"] == "HR Team"
    assert result.metadata["keywords"] == "travel, expenses"
    md = result.markdown
    assert md.startswith("# Travel policy\n\nThis policy applies to every employee.")
    assert "\n# Booking\n" in md and "\n## Allowances\n" in md
    assert "- Trains under six hours\n- Economy class flights\n  - Window seat if available" in md
    assert "| City | Per day |\n| --- | --- |\n| Paris | 120 |\n| Oslo | 150\\|x |" in md
    assert "1. Approve\n2. Pay" in md
    paths = [s.heading_path for s in split_sections(md)]
    assert ("Booking", "Allowances") in paths


def test_docx_truncated_or_not_a_package():
    data = docx_bytes()
    assert_rejected(convert(data[: len(data) // 2], "cut.docx"), "corrupt_file")
    assert_rejected(convert(b"PK\x03\x04 but nothing else", "fake.docx"), "corrupt_file")
    plain_zip = zip_package({"readme.txt": b"hello"})
    assert_rejected(convert(plain_zip, "other.docx"), "corrupt_file")
    legacy = converters._CFB_MAGIC + b"\x00" * 600
    assert_rejected(convert(legacy, "old.docx"), "corrupt_file")
    protected = converters._CFB_MAGIC + "EncryptionInfo".encode("utf-16-le") + b"\x00" * 600
    assert_rejected(convert(protected, "locked.docx"), "encrypted")


@pytest.mark.parametrize("suffix", [".docx", ".pptx", ".xlsx"])
def test_zip_bomb_is_too_large_before_parsing(suffix):
    # 50 MB of zeros deflate to ~50 KB: an inflation ratio of ~1000.
    bomb = zip_package({"[Content_Types].xml": b"<Types/>", "word/document.xml": bytes(50 << 20)})
    assert len(bomb) < 1 << 20
    result = convert(bomb, "invoice" + suffix)
    assert_rejected(result, "too_large")
    assert "inflates" in result.detail
    # The declared total, with an ordinary package and a lower limit.
    small_limit = Limits(max_uncompressed_bytes=10_000)
    assert_rejected(convert(docx_bytes(), "policy" + suffix, small_limit), "too_large")


# ---------------------------------------------------------------- PowerPoint


def test_pptx_one_section_per_slide():
    result = convert(pptx_bytes(3), "deck.pptx")
    assert_clean(result)
    assert result.page_kind == "slide" and len(result.pages) == 3
    assert result.title == "Quarterly roadmap"
    assert result.metadata["slides"] == 3
    assert page_text(result, 1).strip() == (
        "## Quarterly roadmap\n\n- Ship the probe v2\n  - firmware first\n\n"
        "Speaker notes: Mention the delay."
    )
    assert page_text(result, 2).strip() == (
        "## Budget\n\n| Item | EUR |\n| --- | --- |\n| Probes | 900 |"
    )
    assert page_text(result, 3).strip() == "## Slide 3\n\nA slide without a title."
    assert [s.heading_path for s in split_sections(result.markdown)] == [
        ("Quarterly roadmap",),
        ("Budget",),
        ("Slide 3",),
    ]


def test_pptx_limits_and_corruption():
    assert_rejected(convert(pptx_bytes(3), "deck.pptx", Limits(max_pages=2)), "too_large")
    data = pptx_bytes(2)
    assert_rejected(convert(data[: len(data) - 4000], "cut.pptx"), "corrupt_file")


# ---------------------------------------------------------------- HTML


def test_html_structure_without_page_chrome():
    result = convert(HTML_PAGE, "faq.html")
    assert_clean(result)
    md = result.markdown
    assert result.title == "Probe FAQ | ACME"
    assert result.metadata == {"author": "Support Team", "language": "en"}
    assert md.startswith("# Probe FAQ\n\nAnswers to common questions.\nSecond line.")
    chrome = ("ACME home", "Products", "Breadcrumbs", "Posted by", "Related", "Search the")
    for text in (*chrome, "Copyright", "tracking", "color"):
        assert text not in md, text
    assert "\n## Cleaning\n" in md and "\n### Prices\n" in md
    assert "\\# not a heading in the source" in md
    assert "- Rinse it\n  - with water\n- Dry it" in md
    assert "1. Open\n2. Close" in md
    assert "Price list\n\n| Item | Price |\n| --- | --- |\n| Probe | 90 \\| 100 |" in md
    assert "```\n    ```\n# code, not a heading\n    ```\n```" in md
    paths = [s.heading_path for s in split_sections(md)]
    assert paths == [("Probe FAQ",), ("Probe FAQ", "Cleaning"), ("Probe FAQ", "Cleaning", "Prices")]


def test_html_title_falls_back_to_first_h1_and_chrome_only_converts_to_nothing():
    result = convert(b"<body><p>intro</p><h1>Real title</h1><p>text</p></body>", "a.htm")
    assert result.title == "Real title"
    only_chrome = b"<html><body><nav>Home</nav><footer>(c) ACME</footer></body></html>"
    assert_rejected(convert(only_chrome, "menu.html"), "converts_to_nothing")


# ---------------------------------------------------------------- e-mail


def test_eml_prefers_plain_text_and_lists_attachments():
    result = convert(eml_bytes(), "recall.eml")
    assert_clean(result)
    assert result.title == "Probe recall"
    assert result.markdown == "Please return batch 42.\n\n\\# not a heading"
    meta = result.metadata
    assert meta["from"] == "Quality <quality@example.com>"
    assert meta["to"] == "support@example.com"
    assert meta["date"] == "2026-12-01T09:30:00+01:00"
    assert meta["attachments"] == ["recall.pdf"]


def test_eml_html_only_is_converted_as_html():
    result = convert(eml_bytes(html_only=True), "recall.eml")
    assert result.markdown == "# Recall\n\nReturn batch 42."
    assert "attachments" not in result.metadata
    assert_rejected(convert(b"\x89\x00\x01binary", "x.eml"), "corrupt_file")


# ---------------------------------------------------------------- Excel, CSV, RST


def test_xlsx_one_section_per_sheet():
    result = convert(xlsx_bytes(), "prices.xlsx")
    assert_clean(result)
    assert result.title == "Price list"
    assert result.metadata["author"] == "Finance"
    assert result.metadata["sheets"] == ["Prices", "Contacts", "Empty"]
    assert result.markdown.startswith(
        "## Prices\n\n| Product | Price | Since |\n| --- | --- | --- |\n"
        "| probe 0 | 10.5 | 2026-01-01T00:00:00 |"
    )
    assert "## Contacts\n\n| Name | E-mail |\n| --- | --- |\n| Ada | ada@example.com |" in (
        result.markdown
    )
    assert "Empty" not in result.markdown


def test_tables_are_bounded(monkeypatch):
    monkeypatch.setattr(converters, "MAX_TABLE_ROWS", 10)
    result = convert(xlsx_bytes(rows=50), "prices.xlsx")
    assert result.metadata["truncated"] == ["Prices"]
    assert result.markdown.count("| probe ") == 10
    csv_text = "id,name\n" + "".join(f"{i},item {i}\n" for i in range(100))
    result = convert(csv_text.encode(), "items.csv")
    assert result.metadata["truncated"] is True and result.markdown.count("| item ") == 10
    assert "(rows after the first 10 are not converted)" in result.markdown


def test_csv_table_with_sniffed_delimiter():
    result = convert(b"name;price\nprobe;9,50\n\ncable|x;1\n", "prices.csv")
    assert_clean(result)
    assert result.markdown == (
        "| name | price |\n| --- | --- |\n| probe | 9,50 |\n| cable\\|x | 1 |"
    )
    assert result.metadata == {"rows": 2}
    latin = convert("name\ncafé\n".encode("cp1252"), "l.csv")
    assert "café" in latin.markdown and latin.metadata["encoding"] == "cp1252"
    assert_rejected(convert(b"\n\n , \n", "blank.csv"), "converts_to_nothing")


def test_rst_headings_by_adornment():
    text = (
        "=========\nUser Guide\n=========\n\nIntro text.\n\nInstall\n-------\n\n"
        "Run it::\n\n   # a shell comment\n   make\n\nDetails\n~~~~~~~\n\ndeep.\n\n"
        "Upgrade\n-------\n\nnot -- a title\n"
    )
    result = convert(text.encode(), "guide.rst")
    assert_clean(result)
    assert result.title == "User Guide"
    assert result.markdown == (
        "# User Guide\n\nIntro text.\n\n## Install\n\nRun it::\n\n   \\# a shell comment\n"
        "   make\n\n### Details\n\ndeep.\n\n## Upgrade\n\nnot -- a title"
    )


# ---------------------------------------------------------------- Markdown and text


def test_front_matter_becomes_metadata():
    text = "---\ntitle: Handbook\ntags: [hr, travel]\nupdated: 2026-11-01\n---\n# Hi\n\nBody\n"
    result = convert(text.encode(), "handbook.md")
    assert result.markdown == "# Hi\n\nBody\n"
    assert result.metadata == {
        "title": "Handbook",
        "tags": ["hr", "travel"],
        "updated": "2026-11-01",
    }
    assert result.title == "Handbook"
    txt = convert(b"---\nowner: ops\n---\nplain text", "notes.TXT")
    assert txt.markdown == "plain text" and txt.metadata == {"owner": "ops"}


@pytest.mark.parametrize(
    "text",
    [
        "---\ntitle: [unclosed\n---\nbody\n",  # invalid YAML
        "---\njust a string\n---\nbody\n",  # not a mapping
        "---\ntitle: no end marker\nbody\n",
        "---\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n---\nbody\n",  # aliases expanding to 59,049
    ],
)
def test_unusable_front_matter_stays_in_the_text(text):
    result = convert(text.encode(), "doc.markdown")
    assert result.markdown == text and result.metadata == {} and result.reject_reason is None


def test_text_passes_through_unchanged():
    text = "  # Title\r\n\nbody with trailing space  \n"
    assert convert(text.encode(), "a.md").markdown == text
    assert_rejected(convert(b" \n\t\n", "blank.md"), "converts_to_nothing")
    assert_rejected(convert(b"\x00\x01binary\x00", "bin.txt"), "corrupt_file")


# ---------------------------------------------------------------- rejects common to all


@pytest.mark.parametrize("name", ["a.pdf", "a.docx", "a.html", "a.eml", "a.csv", "a.md"])
def test_zero_bytes_is_empty_file(name):
    assert_rejected(convert(b"", name), "empty_file")


@pytest.mark.parametrize("name", ["a.doc", "a.ppt", "archive.zip", "noext", "a.pdf.bak", ".pdf"])
def test_unknown_extension_is_unsupported(name):
    assert_rejected(convert(b"data", name), "unsupported_format")


def test_over_max_bytes_is_too_large_without_parsing():
    result = convert(b"x" * 2000, "big.txt", Limits(max_bytes=1000))
    assert_rejected(result, "too_large")


# ---------------------------------------------------------------- convert_many isolation


def misbehaving_convert(data: bytes, filename: str, limits: Limits) -> Conversion:
    """Runs in the worker: hangs, exits or eats memory on request, else converts."""
    if filename.startswith("hang"):
        time.sleep(600)
    if filename.startswith("die"):
        os._exit(3)
    if filename.startswith("hog"):
        hog = [bytearray(64 << 20) for _ in range(1000)]  # 64 GB, far over the cap
        return convert(bytes(len(hog)), filename, limits)
    return convert(data, filename, limits)


def test_convert_many_keeps_order_and_matches_convert():
    items = [
        (docx_bytes(), "policy.docx"),
        (b"# md\n", "a.md"),
        (b"", "empty.pdf"),
        (pptx_bytes(2), "deck.pptx"),
        (b"x", "a.exe"),
        (HTML_PAGE, "faq.html"),
        (b"a,b\n1,2\n", "t.csv"),
    ]
    results = convert_many(items)
    assert [r.reject_reason for r in results] == [
        None,
        None,
        "empty_file",
        None,
        "unsupported_format",
        None,
        None,
    ]
    assert results == [convert(data, name) for data, name in items]
    assert convert_many([]) == []


def test_hanging_dying_and_hogging_workers_are_contained(monkeypatch):
    monkeypatch.setattr(converters, "_worker_convert", misbehaving_convert)
    limits = Limits(timeout_s=3, max_memory_mb=768)
    items = [
        (b"<p>one</p>", "hang.html"),
        (b"<p>two</p>", "die.html"),
        (b"<p>three</p>", "ok1.html"),
        (b"<p>four</p>", "hog.html"),
        (docx_bytes(), "ok2.docx"),
        (b"<p>five</p>", "hang-again.html"),
        (b"<p>six</p>", "ok3.html"),
    ]
    started = time.monotonic()
    results = convert_many(items, limits)
    assert time.monotonic() - started < 40
    assert [r.reject_reason for r in results] == [
        "conversion_timeout",
        "too_large",
        None,
        "too_large",
        None,
        "conversion_timeout",
        None,
    ]
    assert results[0].detail == "a .html file took longer than 3 s to convert"
    assert "died" in results[1].detail
    assert "memory" in results[3].detail
    assert results[2].markdown == "three" and results[6].markdown == "six"
    assert results[4].title == "Travel policy"


def test_convert_many_rejects_a_huge_pdf_and_converts_the_rest():
    items = [(blank_pdf(2000), "huge.pdf"), (pdf_bytes(MANUAL_PAGES), "manual.pdf")]
    huge, manual = convert_many(items)
    assert_rejected(huge, "too_large")
    assert manual.title == "Probe manual" and len(manual.pages) == 4


# ---------------------------------------------------------------- the SQL functions


def test_rag_convert_udf_on_a_plain_connection():
    conn = duckdb.connect()
    register_udfs(conn)
    conn.execute("create table files (content blob, filename varchar)")
    conn.executemany(
        "insert into files values (?, ?)",
        [
            (pptx_bytes(2), "deck.pptx"),
            (b"", "empty.docx"),
            (b"---\nowner: ops\n---\nhello", "n.md"),
            (None, "missing.pdf"),
        ],
    )
    rows = conn.execute(
        "select filename, c.markdown, c.title, c.pages, c.page_kind, c.metadata, "
        "c.reject_reason, c.detail "
        "from (select filename, rag_convert(content, filename) as c from files) "
        "order by filename"
    ).fetchall()
    by_name = {row[0]: row[1:] for row in rows}
    deck = by_name["deck.pptx"]
    assert deck[0].startswith("## Quarterly roadmap") and deck[1] == "Quarterly roadmap"
    assert deck[2] == [0, deck[0].index("## Budget")] and deck[3] == "slide"
    assert json.loads(deck[4])["slides"] == 2 and deck[5] is None
    assert by_name["empty.docx"][0] is None and by_name["empty.docx"][5] == "empty_file"
    assert by_name["n.md"][0] == "hello" and json.loads(by_name["n.md"][4]) == {"owner": "ops"}
    assert by_name["missing.pdf"] == (None,) * 7  # a NULL argument gives a NULL struct
    assert conn.execute("select rag_converter_version()").fetchone()[0] == CONVERTER_VERSION
    kind = conn.execute("select typeof(rag_convert(''::blob, 'a.txt'))").fetchone()[0]
    assert kind.startswith("STRUCT(markdown VARCHAR, title VARCHAR, pages INTEGER[]")


# ---------------------------------------------------------------- open-ended inputs

TEXTS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",))
    | st.sampled_from("<>/#|=-\n"),
    max_size=300,
)
HTML_TAGS = st.sampled_from(
    ["h1", "h3", "p", "ul", "ol", "li", "table", "tr", "td", "th", "pre", "nav", "br", "div"]
)
HTML = st.lists(
    st.one_of(TEXTS, HTML_TAGS.map(lambda t: f"<{t}>"), HTML_TAGS.map(lambda t: f"</{t}>")),
    max_size=40,
).map("".join)


def assert_never_raises(result: Conversion, passthrough: bool = False) -> None:
    if result.reject_reason is None and passthrough:  # Markdown/text: unchanged
        assert result.markdown.strip()
        json.dumps(result.metadata)
    elif result.reject_reason is None:
        assert_clean(result)
    else:
        assert result.reject_reason in REJECT_REASONS


@settings(derandomize=True, max_examples=150, deadline=None)
@given(HTML)
def test_html_never_raises(text):
    result = convert(text.encode("utf-8"), "page.html")
    assert_never_raises(result)
    if result.markdown:
        # nothing but real headings is seen as one
        for section in split_sections(result.markdown):
            assert all(part for part in section.heading_path)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(TEXTS, st.sampled_from([".csv", ".rst", ".md", ".txt", ".eml"]))
def test_text_formats_never_raise(text, suffix):
    result = convert(text.encode("utf-8"), "doc" + suffix)
    assert_never_raises(result, passthrough=suffix in (".md", ".txt"))


@settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.binary(max_size=400), st.sampled_from([".pdf", ".docx", ".pptx", ".xlsx", ".eml"]))
def test_binary_noise_never_raises(noise, suffix):
    assert_never_raises(convert(noise, "noise" + suffix))


def table_pdf(with_canvas: bool) -> bytes:
    """A page with a paragraph, a three-column table and a closing paragraph: drawn cell by
    cell on the canvas (as many PDF writers do), or as a platypus Table."""
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.pdfgen import canvas
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table

    rows = [["Item", "Price", "Stock"], ["Probe", "120", "4"], ["Buffer pH 7", "9.50", "30"]]
    buffer = io.BytesIO()
    if with_canvas:
        pdf = canvas.Canvas(buffer)
        pdf.setFont("Helvetica", 11)
        pdf.drawString(72, 760, "Prices are in euros and include the cap.")
        for number, row in enumerate(rows):
            for column, cell in enumerate(row):
                pdf.drawString(72 + 140 * column, 730 - 18 * number, cell)
        pdf.drawString(72, 660, "Stock is counted every Friday at noon.")
        pdf.save()
    else:
        styles = getSampleStyleSheet()
        SimpleDocTemplate(buffer).build(
            [
                Paragraph("Prices are in euros and include the cap.", styles["Normal"]),
                Table(rows),
                Paragraph("Stock is counted every Friday at noon.", styles["Normal"]),
            ]
        )
    return buffer.getvalue()


@pytest.mark.parametrize("with_canvas", [True, False], ids=["canvas", "platypus"])
def test_pdf_tables_stay_tables(with_canvas):
    result = convert(table_pdf(with_canvas), "prices.pdf")
    assert_clean(result)
    assert (
        "| Item | Price | Stock |\n| --- | --- | --- |\n| Probe | 120 | 4 |\n"
        "| Buffer pH 7 | 9.50 | 30 |"
    ) in result.markdown
    before, _, after = result.markdown.partition("| Item")
    assert before.strip().endswith("Prices are in euros and include the cap.")
    assert after.strip().endswith("Stock is counted every Friday at noon.")
