"""Split long replies into numbered parts that each fit Twilio's Body limit.

Lengths are Python characters (code points), which is how Twilio states its 1,600-character Body
limit. An emoji is one character here; hard cuts never separate a grapheme's joiners, modifiers,
variation selectors or regional-indicator pairs, so no part starts or ends with half an emoji.
The split is deterministic: the same text always gives the same parts, which is what lets a retry
skip the parts Twilio already accepted.
"""

from __future__ import annotations

import re
import unicodedata

from channels.models import Channel, OutboundMessage

BODY_LIMIT = Channel.sms.capabilities.max_length

_PARAGRAPH = re.compile(r"\n\s*\n\s*")
_SENTENCE = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s+|[\u3002\uff01\uff1f]+\s*")
_WORD = re.compile(r"\s+")
_ZWJ = "\u200d"
_SEPARATORS = (_PARAGRAPH, _SENTENCE, _WORD)


def split_message(text: str, limit: int = BODY_LIMIT) -> list[str]:
    """Parts of `text`, each at most `limit` characters: [text] if it fits, else "(i/n) "-numbered parts.

    Breaks at paragraphs, then sentences, then words, and cuts inside a word only as a last resort.
    Surrounding whitespace is dropped; blank text gives no parts.
    """
    text = text.strip()
    if not text:
        return []
    if len(text) <= limit:
        return [text]
    digits = 1
    while True:
        # Reserve room for the widest prefix at this digit count; more parts than it allows means retry wider.
        budget = limit - len(_prefix(10**digits - 1, 10**digits - 1))
        if budget < 1:
            raise ValueError(f"limit {limit} leaves no room for text after the part number")
        chunks = _pack(text, budget, 0)
        if len(str(len(chunks))) <= digits:
            return [_prefix(i, len(chunks)) + chunk for i, chunk in enumerate(chunks, start=1)]
        digits = len(str(len(chunks)))


def _safe_cut(text: str, index: int) -> int:
    """The largest cut position <= `index` that does not split a grapheme (or `index` if none exists)."""
    cut = index
    while 0 < cut < len(text) and (_is_continuation(text[cut]) or text[cut - 1] == _ZWJ):
        cut -= 1
    if 0 < cut < len(text) and _is_regional_indicator(text[cut]):
        run = 0
        while cut - run - 1 >= 0 and _is_regional_indicator(text[cut - run - 1]):
            run += 1
        if run % 2:
            cut -= 1
    return cut if cut > 0 else index


def _prefix(index: int, total: int) -> str:
    return f"({index}/{total}) "


def _pack(text: str, budget: int, level: int) -> list[str]:
    """Greedily join the pieces of `text` (no surrounding whitespace) into stripped chunks of <= `budget` chars."""
    if level == len(_SEPARATORS):
        return _hard_cut(text, budget)
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, _SEPARATORS[level]):
        stripped = piece.rstrip()
        if len(current) + len(stripped) <= budget:
            current += piece
            continue
        if current.strip():
            chunks.append(current.rstrip())
        if len(stripped) <= budget:
            current = piece
        else:
            *full, last = _pack(stripped, budget, level + 1)
            chunks.extend(full)
            # Keep the separator that followed the piece so the next piece does not run into it.
            current = last + piece[len(stripped) :]
    if current.strip():
        chunks.append(current.rstrip())
    return chunks


def _pieces(text: str, separator: re.Pattern[str]) -> list[str]:
    """Split so that each piece keeps the separator after it: joining the pieces gives `text` back."""
    pieces, start = [], 0
    for match in separator.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


def _hard_cut(text: str, budget: int) -> list[str]:
    chunks = []
    while len(text) > budget:
        cut = _safe_cut(text, budget)
        chunks.append(text[:cut])
        text = text[cut:]
    chunks.append(text)
    return chunks


def _is_continuation(char: str) -> bool:
    """Characters that belong to the grapheme before them (combining marks, joiners, selectors, skin tones)."""
    code = ord(char)
    return (
        char == _ZWJ
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
        or unicodedata.category(char) in ("Mn", "Me", "Mc")
    )


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def message_parts(message: OutboundMessage) -> list[str]:
    """The Body of each provider message `message` becomes (a template is one, with no Body)."""
    if message.content_sid:
        return []
    return split_message(message.text, message.channel.capabilities.max_length or BODY_LIMIT)


def part_count(message: OutboundMessage) -> int:
    """How many provider messages `message` becomes (what a sender's rate counts)."""
    return max(1, len(message_parts(message)))
