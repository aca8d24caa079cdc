from __future__ import annotations

import re

import pytest

from channels.twilio import split_message

PREFIX = re.compile(r"^\((\d+)/(\d+)\) ")


def strip_prefixes(parts: list[str]) -> list[str]:
    bodies = []
    for index, part in enumerate(parts, start=1):
        match = PREFIX.match(part)
        assert match is not None, part[:20]
        assert (int(match.group(1)), int(match.group(2))) == (index, len(parts))
        bodies.append(part[match.end() :])
    return bodies


def sentences(count: int) -> list[str]:
    return [f"Sentence number {i} explains one more step of the refund process." for i in range(count)]


def test_text_that_fits_is_one_unnumbered_part() -> None:
    text = "x" * 1600
    assert split_message(text) == [text]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_blank_text_has_no_parts(text: str) -> None:
    assert split_message(text) == []


def test_four_thousand_characters_become_three_ordered_parts_within_the_limit() -> None:
    paragraphs = [" ".join(sentences(70)[i : i + 7]) for i in range(0, 70, 7)]
    text = "\n\n".join(paragraphs)[:4000]
    assert len(text) == 4000
    parts = split_message(text)
    assert len(parts) == 3
    assert all(len(part) <= 1600 for part in parts)
    assert " ".join(strip_prefixes(parts)).split() == text.split()


def test_paragraph_boundaries_are_preferred() -> None:
    first, second = " ".join(sentences(15)), " ".join(sentences(16))
    assert 900 < len(first) < 1590 and 900 < len(second) < 1590
    assert strip_prefixes(split_message(first + "\n\n" + second)) == [first, second]


def test_sentence_boundaries_are_used_inside_a_long_paragraph() -> None:
    text = " ".join(sentences(40))
    bodies = strip_prefixes(split_message(text))
    assert len(bodies) > 1
    assert all(body.endswith(".") for body in bodies)
    assert " ".join(bodies) == text


def test_words_are_used_when_a_sentence_is_too_long() -> None:
    text = " ".join(f"word{i}" for i in range(600))
    bodies = strip_prefixes(split_message(text, limit=500))
    assert all(len(b) <= 500 - len("(9/9) ") for b in bodies)
    assert " ".join(bodies) == text


def test_a_single_huge_word_is_cut_hard_and_nothing_is_lost() -> None:
    word = "".join(chr(ord("a") + i % 26) for i in range(5000))
    parts = split_message(word)
    assert all(len(part) <= 1600 for part in parts)
    assert "".join(strip_prefixes(parts)) == word


def test_no_part_is_empty_even_with_many_blank_lines() -> None:
    text = ("para\n\n\n\n   \n   indented " * 400).strip()
    parts = split_message(text, limit=100)
    assert all(body and body == body.strip() for body in strip_prefixes(parts))
    assert all(len(part) <= 100 for part in parts)


def test_prefix_width_grows_with_ten_or_more_parts() -> None:
    text = " ".join(sentences(30))
    parts = split_message(text, limit=80)
    assert len(parts) >= 10
    assert all(len(part) <= 80 for part in parts)
    assert parts[0].startswith(f"(1/{len(parts)}) ")
    assert " ".join(strip_prefixes(parts)) == text


def test_emoji_sequences_are_never_cut_apart() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # man ZWJ woman ZWJ girl: 5 code points
    flag = "\U0001f1fa\U0001f1f8"  # US flag: two regional indicators
    thumbs = "\U0001f44d\U0001f3fd"  # thumbs up + skin tone
    unit = family + flag + thumbs
    text = unit * 400
    parts = split_message(text, limit=1000)
    bodies = strip_prefixes(parts)
    assert all(len(part) <= 1000 for part in parts)
    assert "".join(bodies) == text
    for body in bodies:
        assert body.startswith(unit)
        assert body.endswith(unit)


def test_split_is_deterministic() -> None:
    # A retry skips the parts Twilio already accepted by their number, so a text must always give
    # exactly these parts: the same bodies under the same "(i/n) " numbers, whatever was split before.
    text = "Your refund was approved. It reaches your card in 3-5 days.\n\nNeed anything else? Reply here."
    expected = [
        "(1/3) Your refund was approved.",
        "(2/3) It reaches your card in 3-5 days.",
        "(3/3) Need anything else? Reply here.",
    ]
    assert split_message(text, limit=40) == expected
    split_message(" ".join(sentences(100)), limit=40)
    assert split_message(text, limit=40) == expected


def test_limit_too_small_for_the_part_number_is_rejected() -> None:
    with pytest.raises(ValueError):
        split_message("x" * 50, limit=6)
