"""Company documents in the document directory: PDF, Word, PowerPoint and HTML files become
chunks with their pages or slides, bad files are rejected with a reason while the rest
lands, and conversion is cached by content.

The hash embedder stands in for the model: these tests are about what is read from each
file and which files are converted, not about vector quality."""

from __future__ import annotations

import json

import pytest
from conftest import HASH_EMBEDDER

pytestmark = pytest.mark.e2e


def write_pdf(path, pages: list[str]) -> None:
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path))
    for text in pages:
        y = 750
        for line in text.split("\n"):
            pdf.drawString(72, y, line)
            y -= 18
        pdf.showPage()
    pdf.save()


def write_image_only_pdf(path) -> None:
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path))
    for _ in range(2):
        pdf.rect(100, 100, 300, 300, fill=1)
        pdf.showPage()
    pdf.save()


def write_docx(path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Expense policy", level=1)
    document.add_paragraph("Receipts are submitted within thirty days.")
    document.add_heading("Travel", level=2)
    document.add_paragraph("Trains are booked for trips under six hours.")
    document.save(str(path))


def write_pptx(path) -> None:
    import pptx

    deck = pptx.Presentation()
    for title, body in (
        ("Quarterly review", "Revenue grew in every region."),
        ("Hiring plan", "Two platform engineers join in spring."),
    ):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    deck.save(str(path))


def page_of(project, doc_id: str, phrase: str) -> tuple:
    return project.query(
        "select page_start, page_end, page_kind from retrieval_store "
        "where doc_id = ? and chunk_text like ?",
        [doc_id, f"%{phrase}%"],
    )[0]


def test_office_documents_are_chunked_with_pages_and_bad_files_rejected(dbt_project):
    docs = dbt_project.root / "docs"
    docs.mkdir()
    # Pages of ~30 tokens under a 40-token chunk budget: no chunk can hold two pages.
    write_pdf(
        docs / "manual.pdf",
        [
            "Unpacking the probe\nThe TW-400 probe ships in a padded case with a spare cap,"
            "\na cable, a quick guide and a bottle of storage solution.",
            "Calibrating the probe\nRinse the probe with clean water, then dip it in the"
            "\npH 7 buffer first and wait until the reading settles.",
            "Storing the probe\nKeep the probe tip wet in storage solution and never let it"
            "\ndry out between field visits or during transport.",
        ],
    )
    write_image_only_pdf(docs / "scan.pdf")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf")
    write_docx(docs / "policy.docx")
    write_pptx(docs / "review.pptx")
    (docs / "wiki.html").write_text(
        "<html><head><title>Wiki home</title></head><body><nav>Home | About</nav>"
        "<h1>Welcome</h1><p>The wiki explains the build pipeline.</p>"
        "<footer>Copyright</footer></body></html>",
        encoding="utf-8",
    )
    (docs / "empty.docx").write_bytes(b"")
    dbt_project.vars = {
        **HASH_EMBEDDER,
        "golden_min_recall": 0,
        "document_feed": "",
        "document_dir": str(docs),
        "max_chunk_tokens": 40,
        "chunk_overlap_tokens": 0,
    }
    dbt_project.build()

    live = [row[0] for row in dbt_project.query("select distinct doc_id from retrieval_store")]
    assert sorted(live) == ["manual.pdf", "policy.docx", "review.pptx", "wiki.html"]
    assert page_of(dbt_project, "manual.pdf", "pH 7 buffer") == (2, 2, "page")
    assert page_of(dbt_project, "manual.pdf", "transport") == (3, 3, "page")
    assert page_of(dbt_project, "review.pptx", "platform engineers") == (2, 2, "slide")
    assert page_of(dbt_project, "wiki.html", "build pipeline") == (None, None, None)
    headings = dbt_project.query(
        "select heading_path from retrieval_store where doc_id = 'policy.docx' "
        "and chunk_text like '%Trains%'"
    )
    assert headings == [("Expense policy › Travel",)]
    wiki = dbt_project.query(
        "select title, chunk_text from retrieval_store where doc_id = 'wiki.html'"
    )
    assert wiki[0][0] == "Wiki home"
    assert "Home | About" not in wiki[0][1] and "Copyright" not in wiki[0][1]

    # Search results cite the page: the CLI line and the JSON fields.
    cited = dbt_project.rag_store("search", "buffer", "--mode", "keyword", "--k", "1")
    assert cited.returncode == 0, cited.stderr
    assert "manual.pdf p. 2" in cited.stdout
    as_json = dbt_project.rag_store("search", "platform", "--mode", "keyword", "--k", "1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert '"page_kind": "slide"' in as_json.stdout

    rejected = dbt_project.query(
        "select regexp_extract(source_file, '[^/]*$'), reject_reason from documents_rejected "
        "order by 1"
    )
    assert rejected == [
        ("broken.pdf", "corrupt_file"),
        ("empty.docx", "empty_file"),
        ("scan.pdf", "no_text_layer"),
    ]

    # A no-op build converts nothing; an edited file is converted once.
    conversions = "select content_key, converted_at from stg_docs__document_conversions order by 1"
    before = dbt_project.query(conversions)
    dbt_project.build()
    assert dbt_project.query(conversions) == before
    write_pdf(
        docs / "manual.pdf",
        [
            "Unpacking the probe\nThe probe now ships in a plain cardboard box with a cap,"
            "\na cable and a printed guide for the first calibration.",
            "Calibrating the probe\nRinse the probe with clean water, then dip it in the"
            "\npH 4 buffer first and wait until the reading settles.",
        ],
    )
    dbt_project.build()
    after = dbt_project.query(conversions)
    assert len(set(after) - set(before)) == 1
    assert page_of(dbt_project, "manual.pdf", "pH 4") == (2, 2, "page")


def test_relation_rows_carrying_a_file_path_or_its_bytes_are_converted(dbt_project):
    files = dbt_project.root / "attachments"
    files.mkdir()
    # Pages of ~30 tokens under a 40-token chunk budget: no chunk can hold two pages.
    write_pdf(
        files / "manual.pdf",
        [
            "Unpacking the probe\nThe TW-400 probe ships in a padded case with a spare cap,"
            "\na cable, a quick guide and a bottle of storage solution.",
            "Calibrating the probe\nRinse the probe with clean water, then dip it in the"
            "\npH 7 buffer first and wait until the reading settles.",
        ],
    )
    write_docx(files / "policy.docx")
    rows = [
        ("manual", str(files / "manual.pdf")),
        ("policy", str(files / "policy.docx")),
        ("gone", str(files / "missing.pdf")),
    ]
    values = ", ".join(f"('{doc_id}', '{path}', '2026-05-01T00:00:00Z')" for doc_id, path in rows)
    dbt_project.vars = {
        **HASH_EMBEDDER,
        "golden_min_recall": 0,
        "document_feed": "",
        "document_relation": {
            "table": f"(select * from (values {values}) as t(id, path, changed))"
        },
        "document_relation_columns": {
            "doc_id": "id",
            "title": None,
            "body": None,
            "updated_at": "changed",
            "file_path": "path",
        },
        "max_chunk_tokens": 40,
        "chunk_overlap_tokens": 0,
    }
    dbt_project.build()
    assert page_of(dbt_project, "manual", "pH 7 buffer") == (2, 2, "page")
    assert dbt_project.query(
        "select heading_path from retrieval_store where doc_id = 'policy' "
        "and chunk_text like '%Trains%'"
    ) == [("Expense policy › Travel",)]
    assert dbt_project.query("select doc_id, reject_reason from documents_rejected") == [
        ("gone", "file_not_found")
    ]
    conversions = "select content_key, converted_at from stg_docs__document_conversions order by 1"
    before = dbt_project.query(conversions)
    assert dbt_project.build().embedded == 0
    assert dbt_project.query(conversions) == before  # a no-op converts nothing
    write_pdf(
        files / "manual.pdf",
        [
            "Unpacking the probe\nThe probe now ships in a plain cardboard box with a cap,"
            "\na cable and a printed guide for the first calibration.",
            "Calibrating the probe\nRinse the probe with clean water, then dip it in the"
            "\npH 4 buffer first and wait until the reading settles.",
        ],
    )
    dbt_project.build()
    assert len(set(dbt_project.query(conversions)) - set(before)) == 1
    assert page_of(dbt_project, "manual", "pH 4") == (2, 2, "page")

    # The same files as bytes in a BLOB column, named by another column.
    dbt_project.vars["document_relation"] = {
        "table": f"(select * from read_blob('{files}/*'))",
    }
    dbt_project.vars["document_relation_columns"] = {
        "doc_id": "filename",
        "title": None,
        "body": None,
        "updated_at": "last_modified",
        "file_bytes": "content",
        "file_name": "filename",
    }
    dbt_project.vars["max_delete_fraction"] = 1
    dbt_project.build()
    by_bytes = dict(
        dbt_project.query(
            "select regexp_extract(doc_id, '[^/]*$'), max(page_end) from retrieval_store group by 1"
        )
    )
    assert by_bytes == {"manual.pdf": 2, "policy.docx": None}


def write_handbook_pdf(path) -> None:
    """Three pages under a running header and footer: headings in large type, a price table
    drawn cell by cell on page 2."""
    from reportlab.pdfgen import canvas

    pages = [
        ("Unpacking the probe", ["The TW-400 probe ships in a padded case with a spare cap."]),
        ("Prices", ["Replacement parts are ordered from the lab office."]),
        (
            "Storing the probe",
            ["Keep the probe tip wet in storage solution.", "Never let it dry out."],
        ),
    ]
    pdf = canvas.Canvas(str(path))
    for number, (heading, lines) in enumerate(pages, start=1):
        pdf.setFont("Helvetica", 8)
        pdf.drawString(72, 810, "ACME Water Lab handbook")
        pdf.setFont("Helvetica-Bold", 18)
        pdf.drawString(72, 760, heading)
        pdf.setFont("Helvetica", 11)
        y = 730
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 18
        if number == 2:
            rows = [["Part", "Price"], ["Spare cap", "12 EUR"], ["pH 7 buffer bottle", "9 EUR"]]
            for row_number, row in enumerate(rows):
                for column, cell in enumerate(row):
                    pdf.drawString(72 + 180 * column, y - 18 * row_number, cell)
        pdf.setFont("Helvetica", 8)
        pdf.drawString(72, 30, f"Page {number} of {len(pages)}")
        pdf.showPage()
    pdf.save()


def write_recall_eml(path) -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "quality@acme.example"
    message["To"] = "all@acme.example"
    message["Subject"] = "Recall of sensor batch 7781"
    message["Date"] = "Mon, 02 Nov 2026 09:00:00 +0000"
    message.set_content(
        "Sensor batch 7781 is recalled because its membranes crack in cold water. "
        "Return every sensor of that batch to the warehouse."
    )
    message.add_attachment(
        b"%PDF-1.4 recall form", maintype="application", subtype="pdf", filename="recall-form.pdf"
    )
    path.write_bytes(bytes(message))


def test_questions_are_answered_from_the_right_page_or_slide(dbt_project):
    """The real embedder: questions in plain words find the page, slide or message that
    answers them, and the CLI cites it."""
    from pypdf import PdfWriter

    docs = dbt_project.root / "docs"
    docs.mkdir()
    write_handbook_pdf(docs / "handbook.pdf")
    write_pptx(docs / "review.pptx")
    write_recall_eml(docs / "recall.eml")
    locked = PdfWriter(clone_from=str(docs / "handbook.pdf"))
    locked.encrypt("secret", "owner", algorithm="AES-256")
    locked.write(str(docs / "locked.pdf"))
    dbt_project.vars = {"golden_min_recall": 0, "document_feed": "", "document_dir": str(docs)}
    dbt_project.build()

    def top(question: str) -> dict:
        completed = dbt_project.rag_store("search", question, "--k", "1", "--json")
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout)["hits"][0]

    storing = top("how do I keep the probe from drying out between uses?")
    assert (storing["doc_id"], storing["page_start"]) == ("handbook.pdf", 3)
    price = top("what does a spare cap cost?")
    assert (price["doc_id"], price["page_start"]) == ("handbook.pdf", 2)
    assert "| Spare cap | 12 EUR |" in price["chunk_text"]
    hiring = top("how many engineers will we hire?")
    assert (hiring["doc_id"], hiring["page_kind"], hiring["page_start"]) == (
        "review.pptx",
        "slide",
        2,
    )
    recall = top("which sensor batch was recalled and why?")
    assert recall["doc_id"] == "recall.eml"
    assert recall["metadata"]["attachments"] == ["recall-form.pdf"]
    cited = dbt_project.rag_store("search", "how many engineers will we hire?", "--k", "1")
    assert "review.pptx slide 2" in cited.stdout
    assert dbt_project.query("select doc_id, reject_reason from documents_rejected") == [
        ("locked.pdf", "encrypted")
    ]
    running = dbt_project.query(
        "select count(*) from retrieval_store where chunk_text like '%ACME Water Lab handbook%'"
    )
    assert running == [(0,)]
