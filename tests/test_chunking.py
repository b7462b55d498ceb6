"""Chunker: unit tests on hand-made documents and property tests on generated ones."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rag_store.chunking import (
    Chunker,
    ChunkerSettings,
    settings_fingerprint,
    split_sections,
)


def make_chunker(tokenizer, max_tokens=254, overlap=0):
    return Chunker(tokenizer, ChunkerSettings(max_tokens, overlap))


def count(tokenizer, text):
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


# ---------------------------------------------------------------- unit tests


def test_sections_follow_headings_but_not_inside_code_fences():
    text = "Intro.\n\n# A\n\nalpha\n\n```\n# not a heading\n```\n\n## B\n\nbeta\n\n# C\n\ngamma\n"
    sections = split_sections(text)
    assert [s.heading_path for s in sections] == [(), ("A",), ("A", "B"), ("C",)]
    assert "# not a heading" in text[sections[1].start : sections[1].end]
    # Sections tile the text: each starts where the previous ended.
    assert sections[0].start == 0
    assert all(a.end == b.start for a, b in itertools.pairwise(sections))
    assert sections[-1].end == len(text)


def test_heading_only_sections_join_the_next_section():
    text = "# Guide\n\n## 4. Procedures\n\n### 4.1 pH\n\nUse three buffers.\n\n### 4.2 DO\n\nAir.\n"
    sections = split_sections(text)
    assert [s.heading_path for s in sections] == [
        ("Guide", "4. Procedures", "4.1 pH"),
        ("Guide", "4. Procedures", "4.2 DO"),
    ]
    assert text[sections[0].start : sections[0].end].startswith("# Guide")


def test_short_document_is_one_chunk_per_section(tokenizer):
    text = "Opening words.\n\n## Setup\n\nInstall the probe.\n"
    chunks = make_chunker(tokenizer).chunk(text, "Manual")
    assert [c.heading_path for c in chunks] == ["", "Setup"]
    assert chunks[1].chunk_text == "## Setup\n\nInstall the probe."
    assert chunks[1].embedding_text == "Manual › Setup\n\n## Setup\n\nInstall the probe."
    assert [c.chunk_index for c in chunks] == [0, 1]


def test_long_section_prefers_paragraph_boundaries(tokenizer):
    paragraphs = [" ".join(f"word{p}x{i}" for i in range(30)) + "." for p in range(12)]
    text = "\n\n".join(paragraphs)
    chunks = make_chunker(tokenizer, max_tokens=200).chunk(text)
    assert len(chunks) > 1
    for chunk in chunks[:-1]:
        # Every cut falls on a paragraph break: the chunk ends with a whole paragraph.
        assert chunk.chunk_text.endswith(".")
        assert text[chunk.char_end : chunk.char_end + 2] == "\n\n"


def test_a_run_without_spaces_is_cut_between_tokens(tokenizer):
    # Punctuation splits tokens but there is no whitespace: no word boundary anywhere.
    text = "-".join(["ab"] * 2000)
    chunks = make_chunker(tokenizer, max_tokens=32).chunk(text)
    assert len(chunks) > 1
    assert all(c.token_count <= 32 for c in chunks)
    assert "".join(c.chunk_text for c in chunks) == text


def test_token_count_is_the_embedders_count_of_embedding_text(tokenizer):
    text = "## Café\n\nZoë paid 12 € for a crème brûlée. 東京の天気は晴れです。"
    for chunk in make_chunker(tokenizer).chunk(text, "Notes"):
        assert chunk.token_count == count(tokenizer, chunk.embedding_text)


def test_long_headings_are_shortened_visibly(tokenizer):
    title = " ".join(["extraordinarily"] * 200)
    chunks = make_chunker(tokenizer, max_tokens=64).chunk("Some body text.", title)
    assert chunks[0].embedding_text.split("\n\n")[0].endswith("…")
    assert chunks[0].token_count <= 64


def test_settings_are_validated():
    with pytest.raises(ValueError, match="at least 16"):
        ChunkerSettings(8)
    with pytest.raises(ValueError, match="overlap_tokens"):
        ChunkerSettings(100, 60)


def test_fingerprint_changes_with_every_setting():
    base = settings_fingerprint(ChunkerSettings(254, 32), "tok")
    assert base == settings_fingerprint(ChunkerSettings(254, 32), "tok")
    assert base != settings_fingerprint(ChunkerSettings(200, 32), "tok")
    assert base != settings_fingerprint(ChunkerSettings(254, 0), "tok")
    assert base != settings_fingerprint(ChunkerSettings(254, 32), "other-tokenizer")
    assert base != settings_fingerprint(ChunkerSettings(254, 32, context_header=False), "tok")


def test_without_context_header_the_embedder_sees_only_the_chunk(tokenizer):
    chunker = Chunker(tokenizer, ChunkerSettings(254, 0, context_header=False))
    (chunk,) = chunker.chunk("## Support\n\nMail us.", "Release notes")
    assert chunk.embedding_text == chunk.chunk_text == "## Support\n\nMail us."


@pytest.mark.parametrize("overlap", [0, 1])
def test_cuts_never_split_a_character_into_two_chunks(tokenizer, overlap):
    # '홀' is one character and three word pieces; a cut between them once put the character
    # into two chunks (found by the overlap property below).
    text = "# 0\n\n0. 0. 0 0 0 0.\n\n0. 0. 0 0:0:0 0:0:0:0:0홀."
    chunks = Chunker(tokenizer, ChunkerSettings(24, overlap, True)).chunk(text)
    assert len(chunks) > 2
    for previous, current in itertools.pairwise(chunks):
        assert current.char_start >= previous.char_end
    assert "홀" in chunks[-1].chunk_text
    assert sum(chunk.chunk_text.count("홀") for chunk in chunks) == 1


def test_a_run_of_multi_piece_characters_is_cut_between_characters(tokenizer):
    # No word boundary and no single-piece token anywhere: the only allowed cuts are between
    # characters (three pieces each), so every chunk holds whole characters.
    chunker = Chunker(tokenizer, ChunkerSettings(16, 0, False))
    text = "홀" * 40
    chunks = chunker.chunk(text)
    assert "".join(chunk.chunk_text for chunk in chunks) == text
    assert all(chunk.token_count <= 16 for chunk in chunks)


def test_empty_and_blank_text_make_no_chunks(tokenizer):
    assert make_chunker(tokenizer).chunk("") == []
    assert make_chunker(tokenizer).chunk(" \n\n\t ") == []


# ---------------------------------------------------------------- properties

words = st.text(
    alphabet=st.characters(
        codec="utf-8",
        categories=("Lu", "Ll", "Lo", "Nd", "Po", "Sc", "Sm", "Mn"),
    ),
    min_size=1,
    max_size=14,
)
sentences = st.lists(words, min_size=1, max_size=30).map(lambda ws: " ".join(ws) + ".")
paragraphs = st.lists(sentences, min_size=1, max_size=6).map(" ".join)
headings = st.tuples(st.integers(1, 3), st.lists(words, min_size=1, max_size=4)).map(
    lambda h: "#" * h[0] + " " + " ".join(h[1])
)
blocks = st.one_of(paragraphs, paragraphs, headings, st.just("```\n# code\nx = 1\n```"))
documents = st.lists(blocks, min_size=1, max_size=12).map("\n\n".join)
chunk_settings = st.tuples(st.integers(24, 254), st.integers(0, 12)).map(
    lambda s: ChunkerSettings(s[0], min(s[1], s[0] // 2))
)

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(text=documents, title=st.one_of(st.just(""), words), chunker_settings=chunk_settings)
def test_no_chunk_exceeds_the_budget(tokenizer, text, title, chunker_settings):
    chunker = Chunker(tokenizer, chunker_settings)
    for chunk in chunker.chunk(text, title):
        assert chunk.token_count <= chunker_settings.max_chunk_tokens
        assert count(tokenizer, chunk.embedding_text) == chunk.token_count


@PROPERTY_SETTINGS
@given(text=documents, chunker_settings=chunk_settings)
def test_chunks_are_exact_slices_that_cover_the_text_in_order(tokenizer, text, chunker_settings):
    chunks = Chunker(tokenizer, chunker_settings).chunk(text)
    position = 0
    for index, chunk in enumerate(chunks):
        assert chunk.chunk_index == index
        assert chunk.chunk_text == text[chunk.char_start : chunk.char_end]
        if chunk.char_start > position:
            # Whatever lies between chunks carries no tokens: nothing is lost.
            assert count(tokenizer, text[position : chunk.char_start]) == 0
        assert chunk.char_end > chunk.char_start
        position = max(position, chunk.char_end)
    assert count(tokenizer, text[position:]) == 0
    if count(tokenizer, text) > 0:
        assert chunks


@PROPERTY_SETTINGS
@given(text=documents, chunker_settings=chunk_settings)
@example(
    text="# 0\n\n0. 0. 0 0 0 0.\n\n0. 0. 0 0:0:0 0:0:0:0:0홀.",
    chunker_settings=ChunkerSettings(24, 0, True),
)
@example(
    text="# 0\n\n0. 0. 0 0 0 0.\n\n0. 0. 0 0:0:0 0:0:0:0:0홀.",
    chunker_settings=ChunkerSettings(24, 1, True),
)
def test_overlap_never_exceeds_the_configured_tokens(tokenizer, text, chunker_settings):
    chunks = Chunker(tokenizer, chunker_settings).chunk(text)
    for previous, current in itertools.pairwise(chunks):
        if previous.heading_path != current.heading_path:
            continue
        assert current.char_start > previous.char_start
        overlap = max(0, previous.char_end - current.char_start)
        if chunker_settings.overlap_tokens == 0:
            assert overlap == 0
        else:
            shared = text[current.char_start : previous.char_end] if overlap else ""
            assert count(tokenizer, shared) <= chunker_settings.overlap_tokens


def test_overlap_is_applied_when_configured(tokenizer):
    text = " ".join(f"Sentence number {i} is here." for i in range(300))
    chunks = make_chunker(tokenizer, max_tokens=64, overlap=16).chunk(text)
    overlaps = [
        count(tokenizer, text[b.char_start : a.char_end]) for a, b in itertools.pairwise(chunks)
    ]
    assert all(0 < o <= 16 for o in overlaps)


@PROPERTY_SETTINGS
@given(text=documents, title=words, chunker_settings=chunk_settings)
def test_chunking_is_deterministic(tokenizer, text, title, chunker_settings):
    first = Chunker(tokenizer, chunker_settings).chunk(text, title)
    second = Chunker(tokenizer, chunker_settings).chunk(text, title)
    assert first == second


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=0, max_size=400))
def test_any_unicode_text_is_safe(tokenizer, text):
    chunks = make_chunker(tokenizer, max_tokens=32, overlap=4).chunk(text)
    for chunk in chunks:
        assert chunk.chunk_text == text[chunk.char_start : chunk.char_end]
        assert chunk.token_count <= 32
        chunk.chunk_text.encode("utf-8")
