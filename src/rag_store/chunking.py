"""Structure-aware chunking measured in the embedder's own tokens.

A document is cut into markdown sections first (ATX headings outside fenced code). Inside a
section the text is tokenised once; a chunk is then the longest run of tokens that fits the
budget and ends at the strongest boundary available — paragraph, then line, then sentence,
then word, and only as a last resort between two tokens. Every chunk's `embedding_text`
(a short "title › heading path" header plus the chunk text) is re-tokenised and checked
against the budget, so no chunk can be silently truncated by the model.

Also the home of the chunk-window rule (a chunk budget never exceeds the embedder's window)
and of the per-process cache of chunkers the `rag_chunk` UDF uses.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from rag_store.embedder_info import EmbedderInfo, embedder_info

CHUNKER_VERSION = "md-tokens-v1"
HEADER_SEPARATOR = " › "
# A header never takes more than this share of the token budget; it is cut at a word
# boundary (visibly: it ends with "…") rather than crowding out the chunk text.
MAX_HEADER_SHARE = 0.25

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_SENTENCE_END = frozenset(".!?。！？;:")

# Boundary strengths between two adjacent tokens. INSIDE_CHARACTER marks two pieces of one
# character (a Hangul syllable decomposes into several word pieces): never a cut, or the
# character would land in two chunks.
PARAGRAPH, LINE, SENTENCE, WORD, TOKEN, INSIDE_CHARACTER = 4, 3, 2, 1, 0, -1


class TokenizerLike(Protocol):
    """The slice of `tokenizers.Tokenizer` the chunker needs."""

    def encode(self, text: str, add_special_tokens: bool = ...):  # pragma: no cover
        ...


@dataclass(frozen=True)
class ChunkerSettings:
    # The chunk budget: at most this many tokens (without special tokens) per embedding_text.
    max_chunk_tokens: int
    overlap_tokens: int = 0
    # Prefix what the embedder sees with "title › heading path". Better retrieval for short
    # chunks; off makes identical text under different titles share one vector.
    context_header: bool = True

    def __post_init__(self) -> None:
        if self.max_chunk_tokens < 16:
            raise ValueError(f"max_chunk_tokens must be at least 16, got {self.max_chunk_tokens}")
        if not 0 <= self.overlap_tokens <= self.max_chunk_tokens // 2:
            raise ValueError(
                "overlap_tokens must be between 0 and half of max_chunk_tokens "
                f"({self.max_chunk_tokens // 2}), got {self.overlap_tokens}"
            )


@dataclass(frozen=True)
class Section:
    heading_path: tuple[str, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Chunk:
    chunk_index: int
    chunk_text: str
    embedding_text: str
    token_count: int
    char_start: int
    char_end: int
    heading_path: str

    def as_dict(self) -> dict:
        return {
            "chunk_index": self.chunk_index,
            "chunk_text": self.chunk_text,
            "embedding_text": self.embedding_text,
            "token_count": self.token_count,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "heading_path": self.heading_path,
        }


def settings_fingerprint(settings: ChunkerSettings, tokenizer_digest: str) -> str:
    """Identifies everything besides the text that shapes a chunk."""
    raw = (
        f"{CHUNKER_VERSION}|tok={tokenizer_digest}|max={settings.max_chunk_tokens}"
        f"|overlap={settings.overlap_tokens}|header={int(settings.context_header)}"
    )
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


def split_sections(text: str) -> list[Section]:
    """Split markdown into sections at ATX headings that are not inside fenced code."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    current_start = body_start = 0
    current_path: tuple[str, ...] = ()
    in_fence = False
    offset = 0
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            heading = _HEADING.match(line.rstrip("\r\n"))
            if heading:
                if text[body_start:offset].strip():
                    sections.append(Section(current_path, current_start, offset))
                    current_start = offset
                elif not text[current_start:offset].strip():
                    current_start = offset
                # else: the section so far is only headings ("## 4. Procedures" right
                # before "### 4.1 pH"); they stay with the next section's text.
                level = len(heading.group(1))
                path = [(lvl, title) for lvl, title in path if lvl < level]
                path.append((level, heading.group(2).strip()))
                current_path = tuple(title for _, title in path)
                body_start = offset + len(line)
        offset += len(line)
    if text[current_start:].strip():
        sections.append(Section(current_path, current_start, len(text)))
    return sections


def _boundary_strengths(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """strength[i] = how good a cut is just before token i (i >= 1)."""
    strengths = [PARAGRAPH]
    for i in range(1, len(offsets)):
        prev_end = offsets[i - 1][1]
        gap = text[prev_end : offsets[i][0]]
        if offsets[i][0] < prev_end:
            strengths.append(INSIDE_CHARACTER)
        elif gap.count("\n") >= 2:
            strengths.append(PARAGRAPH)
        elif "\n" in gap:
            strengths.append(LINE)
        elif gap and text[prev_end - 1 : prev_end] in _SENTENCE_END:
            strengths.append(SENTENCE)
        elif gap:
            strengths.append(WORD)
        else:
            strengths.append(TOKEN)
    return strengths


def _best_cut(strengths: Sequence[int], start: int, limit: int, floor: int | None = None) -> int:
    """Furthest cut in (floor, limit] of the highest strength present.

    `floor` defaults to the middle of the window, so a chunk is at least half full unless the
    section itself ends sooner. When that range holds only cuts inside a character, the
    furthest character boundary after `start` is taken instead.
    """
    if floor is None:
        floor = start + (limit - start) // 2
    floor = max(floor, start)
    best_index, best_strength = limit, INSIDE_CHARACTER
    for i in range(limit, floor, -1):
        strength = strengths[i] if i < len(strengths) else PARAGRAPH
        if strength > best_strength:
            best_index, best_strength = i, strength
            if strength == PARAGRAPH:
                break
    if best_strength == INSIDE_CHARACTER:
        return _last_character_boundary(strengths, start, floor)
    return best_index


def _last_character_boundary(strengths: Sequence[int], start: int, limit: int) -> int:
    """Furthest cut in (start, limit] that does not split a character."""
    for i in range(limit, start, -1):
        if i >= len(strengths) or strengths[i] > INSIDE_CHARACTER:
            return i
    raise ValueError(
        "a single character has more tokens than the chunk budget; "
        "raise max_chunk_tokens or shorten the title/headings"
    )


def _overlap_start(strengths: Sequence[int], start: int, end: int, overlap: int) -> int:
    """Where the next chunk starts so it repeats at most `overlap` tokens of this one."""
    if overlap <= 0 or end - start <= 1:
        return end
    candidate = max(start + 1, end - overlap)
    # Move forward to a word boundary so the overlap never starts mid-word.
    while candidate < end and strengths[candidate] < WORD:
        candidate += 1
    return candidate


class Chunker:
    """Chunks text for one tokenizer and one set of settings."""

    def __init__(self, tokenizer: TokenizerLike, settings: ChunkerSettings):
        self.tokenizer = tokenizer
        self.settings = settings

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def header(self, title: str, heading_path: Sequence[str]) -> str:
        if not self.settings.context_header:
            return ""
        parts = [p for p in (title.strip(), *heading_path) if p]
        header = HEADER_SEPARATOR.join(parts)
        limit = int(self.settings.max_chunk_tokens * MAX_HEADER_SHARE)
        if not header or self.count_tokens(header) <= limit:
            return header
        encoding = self.tokenizer.encode(header, add_special_tokens=False)
        cut = encoding.offsets[limit - 1][1]
        return header[:cut].rstrip() + "…"

    def chunk(self, text: str, title: str = "") -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in split_sections(text):
            header = self.header(title, section.heading_path)
            for char_start, char_end, embedding_text, tokens in self._chunk_section(
                text, section, header
            ):
                chunks.append(
                    Chunk(
                        chunk_index=len(chunks),
                        chunk_text=text[char_start:char_end],
                        embedding_text=embedding_text,
                        token_count=tokens,
                        char_start=char_start,
                        char_end=char_end,
                        heading_path=HEADER_SEPARATOR.join(section.heading_path),
                    )
                )
        return chunks

    def _compose(self, header: str, body: str) -> str:
        return f"{header}\n\n{body}" if header else body

    def _chunk_section(
        self, text: str, section: Section, header: str
    ) -> Iterator[tuple[int, int, str, int]]:
        section_text = text[section.start : section.end]
        encoding = self.tokenizer.encode(section_text, add_special_tokens=False)
        offsets = [(a + section.start, b + section.start) for a, b in encoding.offsets]
        if not offsets:
            return
        strengths = _boundary_strengths(text, offsets)
        header_tokens = self.count_tokens(header) + (2 if header else 0)
        budget = self.settings.max_chunk_tokens - header_tokens
        start = 0
        while start < len(offsets):
            limit = min(start + budget, len(offsets))
            end = limit if limit == len(offsets) else _best_cut(strengths, start, limit)
            while True:
                char_start, char_end = offsets[start][0], offsets[end - 1][1]
                embedding_text = self._compose(header, text[char_start:char_end])
                tokens = self.count_tokens(embedding_text)
                if tokens <= self.settings.max_chunk_tokens or end - start == 1:
                    break
                # Re-tokenising a slice can cost more tokens than it did in context.
                end = (
                    _best_cut(strengths, start, end - 1, floor=start)
                    if end - start > 2
                    else _last_character_boundary(strengths, start, start + 1)
                )
            if tokens > self.settings.max_chunk_tokens:
                raise ValueError(
                    "a single token does not fit the chunk budget; "
                    "raise max_chunk_tokens or shorten the title/headings"
                )
            yield char_start, char_end, embedding_text, tokens
            if end >= len(offsets):
                break
            start = _overlap_start(strengths, start, end, self.settings.overlap_tokens)


@lru_cache(maxsize=8)
def load_tokenizer(tokenizer_file: str):
    """A `tokenizers.Tokenizer` with truncation and padding off (we count, never truncate)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_file)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def chunker_settings_for(
    model_ref: str,
    max_chunk_tokens: int | None,
    overlap_tokens: int | None,
    context_header: bool | None = True,
) -> tuple[EmbedderInfo, ChunkerSettings]:
    """The embedder of `model_ref` and validated chunker settings for it.

    The chunk-window rule: a budget (max_chunk_tokens) that is NULL or <= 0 means the model's
    whole window; a budget larger than the window is refused, as the model would truncate.
    """
    info = embedder_info(model_ref)
    window = info.window_tokens
    budget = window if not max_chunk_tokens or max_chunk_tokens <= 0 else max_chunk_tokens
    if budget > window:
        raise ValueError(
            f"max_chunk_tokens={budget} exceeds the window of {info.model_id} "
            f"({window} tokens without special tokens); the model would truncate silently"
        )
    header = True if context_header is None else bool(context_header)
    return info, ChunkerSettings(budget, overlap_tokens or 0, header)


@lru_cache(maxsize=32)
def chunker_for(
    model_ref: str,
    max_chunk_tokens: int | None,
    overlap_tokens: int | None,
    context_header: bool | None = True,
) -> Chunker:
    """The Chunker for `model_ref` and these settings, built once per process."""
    info, settings = chunker_settings_for(
        model_ref, max_chunk_tokens, overlap_tokens, context_header
    )
    return Chunker(load_tokenizer(str(info.tokenizer_file)), settings)


def chunker_fingerprint(
    model_ref: str,
    max_chunk_tokens: int | None,
    overlap_tokens: int | None,
    context_header: bool | None = True,
) -> str:
    """The settings_fingerprint of the chunker `chunker_for` returns for these arguments."""
    info, settings = chunker_settings_for(
        model_ref, max_chunk_tokens, overlap_tokens, context_header
    )
    return settings_fingerprint(settings, info.tokenizer_digest)


def count_tokens_by_model(
    texts: Sequence[str | None], model_refs: Sequence[str | None]
) -> list[int | None]:
    """Token counts (no special tokens) of texts[i] under the tokenizer of model_refs[i];
    None where either is None. Each model's texts go through its batch encoder at once,
    which runs in parallel: a tenth of the cost of counting row by row."""
    counts: list[int | None] = [None] * len(texts)
    rows_by_ref: dict[str, list[int]] = {}
    for row, (text, ref) in enumerate(zip(texts, model_refs, strict=True)):
        if text is not None and ref is not None:
            rows_by_ref.setdefault(ref, []).append(row)
    for ref, rows in rows_by_ref.items():
        tokenizer = load_tokenizer(str(embedder_info(ref).tokenizer_file))
        encodings = tokenizer.encode_batch([texts[i] for i in rows], add_special_tokens=False)
        for row, encoding in zip(rows, encodings, strict=True):
            counts[row] = len(encoding.ids)
    return counts
