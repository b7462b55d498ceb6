"""Document conversion throughput per format, outside dbt.

Generates files of every converted format with their own writers (reportlab for PDF,
python-docx, python-pptx, openpyxl, the email package; HTML, CSV and RST as text), then
converts them twice: with `convert` one after another in this process (one core, the cost of
the converter itself) and with `convert_many` (worker processes, one per core, start-up
included: what the `rag_convert` UDF pays per batch). Prints files/s and pages/s (pages for
PDF, slides for PPTX) per format, with the machine and the load average.

    .venv/bin/python bench/convert_throughput.py             # 30 files per format
    .venv/bin/python bench/convert_throughput.py --files 40 --pdf-pages 30
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import time
from email.message import EmailMessage

from rag_store.converters import convert, convert_many

WORDS = [
    "probe",
    "calibration",
    "buffer",
    "membrane",
    "sensor",
    "oxygen",
    "sample",
    "water",
    "laboratory",
    "report",
    "value",
    "measure",
    "storage",
    "cleaning",
    "schedule",
    "supplier",
    "batch",
    "quality",
    "limit",
    "result",
    "method",
    "weekly",
]


def sentence(rng: random.Random, words: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def make_pdf(rng: random.Random, pages: int) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    pdf.setTitle("Generated manual")
    for number in range(1, pages + 1):
        pdf.setFont("Helvetica", 8)
        pdf.drawString(72, 810, "ACME - internal")
        pdf.setFont("Helvetica-Bold", 16)
        pdf.drawString(72, 770, f"Section {number}: {sentence(rng, 3)}")
        pdf.setFont("Helvetica", 10)
        for line in range(40):
            pdf.drawString(72, 740 - line * 16, sentence(rng, 11))
        pdf.setFont("Helvetica", 8)
        pdf.drawString(72, 30, f"Page {number} of {pages}")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_docx(rng: random.Random) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Generated policy", 0)
    for section in range(8):
        document.add_heading(sentence(rng, 3), 1 + section % 2)
        for _ in range(5):
            document.add_paragraph(" ".join(sentence(rng) for _ in range(4)))
        document.add_paragraph(sentence(rng, 5), style="List Bullet")
        document.add_paragraph(sentence(rng, 5), style="List Bullet")
    table = document.add_table(rows=12, cols=4)
    for row in table.rows:
        for cell in row.cells:
            cell.text = rng.choice(WORDS)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_pptx(rng: random.Random, slides: int) -> bytes:
    import pptx

    deck = pptx.Presentation()
    for _ in range(slides):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = sentence(rng, 3)
        frame = slide.placeholders[1].text_frame
        frame.text = sentence(rng, 8)
        for _ in range(4):
            frame.add_paragraph().text = sentence(rng, 8)
        slide.notes_slide.notes_text_frame.text = sentence(rng, 20)
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def make_xlsx(rng: random.Random) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    for index in range(3):
        sheet = workbook.active if index == 0 else workbook.create_sheet()
        sheet.title = f"Sheet {index + 1}"
        sheet.append(["Item", "Value", "Unit", "Note"])
        for _ in range(300):
            sheet.append([rng.choice(WORDS), rng.random() * 100, "mg/l", sentence(rng, 5)])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def make_html(rng: random.Random) -> bytes:
    parts = ["<html><head><title>Generated page</title></head><body>"]
    parts.append("<nav>" + "".join(f"<a href='#'>{w}</a>" for w in WORDS) + "</nav><main>")
    for section in range(10):
        parts.append(f"<h2>{sentence(rng, 3)}</h2>")
        parts += [f"<p>{sentence(rng, 30)}</p>" for _ in range(4)]
        parts.append("<ul>" + "".join(f"<li>{sentence(rng, 6)}</li>" for _ in range(4)) + "</ul>")
        if section % 3 == 0:
            rows = "".join(
                f"<tr><td>{rng.choice(WORDS)}</td><td>{rng.random():.3f}</td></tr>"
                for _ in range(10)
            )
            parts.append(f"<table><tr><th>Item</th><th>Value</th></tr>{rows}</table>")
    parts.append("</main><footer>Imprint</footer></body></html>")
    return "".join(parts).encode()


def make_eml(rng: random.Random) -> bytes:
    message = EmailMessage()
    message["Subject"] = sentence(rng, 4)
    message["From"] = "quality@example.com"
    message["To"] = "support@example.com"
    message["Date"] = "Tue, 01 Dec 2026 09:30:00 +0100"
    message.set_content("\n\n".join(sentence(rng, 25) for _ in range(12)))
    message.add_attachment(b"x" * 2000, maintype="application", subtype="pdf", filename="a.pdf")
    return message.as_bytes()


def make_csv(rng: random.Random) -> bytes:
    rows = ["item,value,unit,note"]
    rows += [
        f"{rng.choice(WORDS)},{rng.random() * 100:.2f},mg/l,{sentence(rng, 5)}" for _ in range(1000)
    ]
    return "\n".join(rows).encode()


def make_rst(rng: random.Random) -> bytes:
    parts = ["Generated guide\n===============\n"]
    for _ in range(10):
        title = sentence(rng, 3)
        parts.append(f"{title}\n{'-' * len(title)}\n")
        parts += [sentence(rng, 30) + "\n" for _ in range(4)]
    return "\n".join(parts).encode()


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=30, help="files per format")
    parser.add_argument("--pdf-pages", type=int, default=20)
    parser.add_argument("--slides", type=int, default=15)
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    makers = {
        ".pdf": lambda: make_pdf(rng, args.pdf_pages),
        ".docx": lambda: make_docx(rng),
        ".pptx": lambda: make_pptx(rng, args.slides),
        ".xlsx": lambda: make_xlsx(rng),
        ".html": lambda: make_html(rng),
        ".eml": lambda: make_eml(rng),
        ".csv": lambda: make_csv(rng),
        ".rst": lambda: make_rst(rng),
    }
    print(f"machine: {machine()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    header = (
        f"{'format':<6} {'files':>5} {'KB/file':>8} {'pages/file':>10} "
        f"{'1 core files/s':>14} {'pages/s':>8} {'pool files/s':>12} {'pages/s':>8}"
    )
    print(header)
    print("-" * len(header))
    for suffix, make in makers.items():
        items = [(make(), f"file{i}{suffix}") for i in range(args.files)]
        started = time.perf_counter()
        results = [convert(data, name) for data, name in items]
        serial = time.perf_counter() - started
        assert all(r.reject_reason is None for r in results), [r.detail for r in results]
        started = time.perf_counter()
        pooled = convert_many(items)
        pool = time.perf_counter() - started
        assert pooled == results
        pages = sum(len(r.pages) for r in results)
        size = sum(len(data) for data, _ in items) / len(items) / 1024
        per_file = f"{pages / len(items):.0f}" if pages else "-"
        page_rates = (
            (f"{pages / serial:8.1f}", f"{pages / pool:8.1f}") if pages else ("       -",) * 2
        )
        print(
            f"{suffix[1:]:<6} {len(items):>5} {size:>8.0f} {per_file:>10} "
            f"{len(items) / serial:>14.1f} {page_rates[0]} {len(items) / pool:>12.1f} "
            f"{page_rates[1]}"
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
