"""A deterministic, synthetic-but-plausible markdown corpus in the rag-store feed format.

Documents read like an internal knowledge base (runbooks, product notes, policies, API
guides): a title, an intro paragraph and 2-4 `##` sections of prose and lists, 150-600
words in all. The same seed always gives the same documents, byte for byte.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Fixed, in the past, so feeds are reproducible and never rejected as "in the future".
BASE_TIME = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
MIN_WORDS, MAX_WORDS = 150, 600


@dataclass(frozen=True)
class Shape:
    """How long documents are: words in all (headings included) and `##` sections."""

    min_words: int = MIN_WORDS
    max_words: int = MAX_WORDS
    min_sections: int = 2
    max_sections: int = 4

    def __post_init__(self):
        if not 40 <= self.min_words <= self.max_words:
            raise ValueError(f"words must satisfy 40 <= min <= max, got {self}")
        if not 1 <= self.min_sections <= self.max_sections <= 4:
            raise ValueError(f"sections must satisfy 1 <= min <= max <= 4, got {self}")


SHORT = Shape(min_words=60, max_words=220, min_sections=1, max_sections=1)

KINDS = {
    "runbooks": ("Runbook", ["Symptoms", "Diagnosis", "Mitigation", "Escalation", "Follow-up"]),
    "products": ("Product note", ["Overview", "Specifications", "Installation", "Maintenance"]),
    "policies": ("Policy", ["Scope", "Rules", "Exceptions", "Approvals", "Contacts"]),
    "api": ("API guide", ["Authentication", "Endpoints", "Errors", "Rate limits", "Examples"]),
    "howto": ("How-to", ["Before you start", "Steps", "Troubleshooting", "Related pages"]),
}

SYSTEMS = [
    "billing service",
    "ingest gateway",
    "search cluster",
    "payments queue",
    "identity proxy",
    "report scheduler",
    "edge cache",
    "metrics pipeline",
    "backup vault",
    "mail relay",
    "TW-400 probe",
    "field tablet",
    "calibration bench",
    "label printer",
    "VPN concentrator",
]
TEAMS = ["Platform", "Support", "Finance", "Facilities", "Security", "Field Ops", "Data"]
OBJECTS = [
    "the retry budget",
    "the access token",
    "the nightly export",
    "the replica lag",
    "the error rate",
    "the disk quota",
    "the firmware image",
    "the audit log",
    "the cost centre",
    "the purchase order",
    "the on-call rota",
    "the rollback plan",
    "the sample buffer",
    "the connection pool",
    "the signing key",
    "the shipping label",
]
VERBS = [
    "check",
    "rotate",
    "restart",
    "review",
    "escalate",
    "document",
    "pause",
    "drain",
    "recalibrate",
    "archive",
    "approve",
    "compare",
    "reset",
    "monitor",
    "replace",
]
QUALIFIERS = [
    "before the change window opens",
    "within two business days",
    "after every deploy",
    "when the alert fires twice in an hour",
    "at the start of each quarter",
    "unless the customer has asked otherwise",
    "during the maintenance window",
    "if the dashboard shows a gap",
    "once the ticket is acknowledged",
    "before you close the incident",
    "while traffic is drained",
]
OPENERS = [
    "This page describes how {team} handles the {system}.",
    "Use this page when you work on the {system} for the first time.",
    "The {system} is owned by {team}; questions go to their channel.",
    "Most problems with the {system} come down to {object}.",
]
SENTENCES = [
    "Always {verb} {object} {qualifier}.",
    "{team} will {verb} {object} {qualifier}.",
    "If {object} looks wrong, {verb} it and note the result in the ticket.",
    "Do not {verb} {object} on the {system} without a second reviewer.",
    "The {system} reports {object} every {number} minutes, so expect a short delay.",
    "Set the threshold to {number} and {verb} {object} {qualifier}.",
    "A value above {number} usually means {object} needs attention.",
    "For the {system}, {team} keeps a checklist; {verb} {object} as its first step.",
    "Version {number}.{minor} changed how the {system} treats {object}.",
    "Ask {team} to {verb} {object} if you lack the permission.",
]
LIST_ITEMS = [
    "{verb} {object}",
    "confirm the {system} is healthy",
    "{verb} {object} {qualifier}",
    "write down the value of {object}",
    "tell {team} when you are done",
]
EDIT_SENTENCE = "Update {date}: {team} now asks you to {verb} {object} {qualifier} as well."


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    sections: tuple[tuple[str, str], ...]  # (heading, text); the first heading is "" (intro)
    updated_at: datetime
    loaded_at: datetime

    @property
    def body(self) -> str:
        parts = []
        for heading, text in self.sections:
            parts.append(f"## {heading}\n\n{text}" if heading else text)
        return "\n\n".join(parts) + "\n"

    def feed_row(self) -> dict:
        return {
            "doc_id": self.doc_id,
            "title": self.title,
            "body": self.body,
            "source_uri": f"https://kb.example.com/{self.doc_id}",
            "updated_at": iso(self.updated_at),
            "is_deleted": False,
            "_loaded_at": iso(self.loaded_at),
        }

    def word_count(self) -> int:
        return len(self.body.split())


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fill(template: str, rng: random.Random, system: str, team: str) -> str:
    text = template.format(
        system=system,
        team=team,
        object=rng.choice(OBJECTS),
        verb=rng.choice(VERBS),
        qualifier=rng.choice(QUALIFIERS),
        number=rng.randint(2, 90),
        minor=rng.randint(0, 9),
        date=f"{rng.randint(1, 28)} {rng.choice(['March', 'April', 'May'])}",
    )
    return text[0].upper() + text[1:]


def paragraph(rng: random.Random, words: int, system: str, team: str) -> str:
    sentences: list[str] = []
    count = 0
    while True:
        sentence = fill(rng.choice(SENTENCES), rng, system, team)
        size = len(sentence.split())
        if sentences and count + size > words:
            break
        sentences.append(sentence)
        count += size
    return " ".join(sentences)


def section_text(rng: random.Random, words: int, system: str, team: str) -> str:
    """Prose, sometimes split in paragraphs, sometimes with a list, about `words` long."""
    blocks: list[str] = []
    remaining = words
    while remaining > 0:
        if remaining > 25 and rng.random() < 0.25:
            items = [fill(rng.choice(LIST_ITEMS), rng, system, team) for _ in range(3)]
            numbered = rng.random() < 0.5
            lines = [
                f"{i}. {item}." if numbered else f"- {item}."
                for i, item in enumerate(items, start=1)
            ]
            blocks.append("\n".join(lines))
            remaining -= sum(len(item.split()) + 1 for item in items)
        else:
            size = min(remaining, rng.randint(30, 90))
            text = paragraph(rng, size, system, team)
            blocks.append(text)
            remaining -= len(text.split())
    return "\n\n".join(blocks)


def make_document(rng: random.Random, index: int, shape: Shape = Shape()) -> Document:
    """One document of the shape's length (default 150-600 words, headings included),
    drawn until it fits."""
    while True:
        doc = draft_document(rng, index, shape)
        if shape.min_words <= doc.word_count() <= shape.max_words:
            return doc


def draft_document(rng: random.Random, index: int, shape: Shape) -> Document:
    kind = rng.choice(sorted(KINDS))
    label, headings = KINDS[kind]
    system = rng.choice(SYSTEMS)
    team = rng.choice(TEAMS)
    total_words = rng.randint(shape.min_words, shape.max_words)
    chosen = rng.sample(
        headings, rng.randint(shape.min_sections, min(shape.max_sections, len(headings)))
    )
    intro_words = max(15, total_words // 8)
    share = (total_words - intro_words) // len(chosen)
    intro = (
        fill(rng.choice(OPENERS), rng, system, team)
        + " "
        + paragraph(rng, intro_words, system, team)
    )
    sections = [("", intro)]
    for heading in chosen:
        words = max(10, int(share * rng.uniform(0.6, 1.4)))
        sections.append((heading, section_text(rng, words, system, team)))
    slug = system.lower().replace(" ", "-").replace("/", "-")
    return Document(
        doc_id=f"{kind}/{slug}-{index:06d}",
        title=f"{label}: {system.capitalize()} ({team}) #{index}",
        sections=tuple(sections),
        # ten seconds apart: five million documents stay in the past (a minute apart, the
        # millionth lay in the future and was rightly rejected as updated_at_in_future)
        updated_at=BASE_TIME + timedelta(seconds=10 * index),
        loaded_at=BASE_TIME + timedelta(days=1),
    )


def make_corpus(count: int, seed: int, shape: Shape = Shape()) -> list[Document]:
    """`count` documents of the given shape. A chunk never spans two sections, so the
    chunks per document follow the sections: the default shape gives about 4.2, `SHORT`
    exactly 2 (an intro and one section)."""
    rng = random.Random(seed)
    return [make_document(rng, index, shape) for index in range(count)]


def edit_documents(docs: list[Document], fraction: float, seed: int) -> list[Document]:
    """New versions of `fraction` of the documents (at least one): one section gains a
    sentence; updated_at and _loaded_at move later, so the change arrives as a new delivery."""
    rng = random.Random(seed + 1)
    count = max(1, round(len(docs) * fraction))
    picked = sorted(rng.sample(range(len(docs)), count))
    edited = []
    for position in picked:
        doc = docs[position]
        target = rng.randrange(1, len(doc.sections))
        heading, text = doc.sections[target]
        team = rng.choice(TEAMS)
        addition = fill(EDIT_SENTENCE, rng, rng.choice(SYSTEMS), team)
        sections = list(doc.sections)
        sections[target] = (heading, f"{text} {addition}")
        edited.append(
            replace(
                doc,
                sections=tuple(sections),
                updated_at=doc.updated_at + timedelta(days=30),
                loaded_at=BASE_TIME + timedelta(days=31),
            )
        )
    return edited


def write_feed(path: Path, docs: list[Document]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps(doc.feed_row(), ensure_ascii=False) + "\n")
