"""Keyword detectors used as a fallback to the model's own tool calls (SPEC §5, §9)."""

from __future__ import annotations

import re

# Words a customer uses to ask for a person, per language (SPEC §5 lists the English ones).
HUMAN_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("human", "agent", "representative", "real person", "operator", "someone real", "live person"),
    "es": ("humano", "agente", "representante", "persona real", "operador"),
    "fr": ("humain", "agent", "conseiller", "vraie personne", "opérateur"),
    "de": ("mensch", "mitarbeiter", "berater", "echte person", "operator"),
    "pt": ("humano", "atendente", "representante", "pessoa real", "operador"),
}

CALL_PATTERNS = re.compile(
    r"\b(call me|give me a call|phone me|ring me|yes,? (please )?call|please call|you can call)\b", re.IGNORECASE
)


def _words(language: str) -> tuple[str, ...]:
    base = language.split("-")[0].lower()
    words = HUMAN_WORDS.get(base, ())
    return words + HUMAN_WORDS["en"] if base != "en" else words


def asks_for_human(text: str, language: str = "en") -> bool:
    lowered = text.lower()
    return any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", lowered) for w in _words(language))


def agrees_to_call(text: str) -> bool:
    return bool(CALL_PATTERNS.search(text))


GOODBYE_PATTERNS = re.compile(
    r"\b(bye|goodbye|good bye|that'?s all|that is all|hang up|end the call|nothing else)\b", re.IGNORECASE
)
PHONE_NUMBER = re.compile(r"\+[1-9]\d{6,14}\b")


def says_goodbye(text: str) -> bool:
    return bool(GOODBYE_PATTERNS.search(text))


def phone_number_in(text: str) -> str | None:
    """An E.164 number the customer wrote (e.g. "call me at +15551234567")."""
    found = PHONE_NUMBER.search(text.replace(" ", "").replace("-", ""))
    return found.group(0) if found else None
