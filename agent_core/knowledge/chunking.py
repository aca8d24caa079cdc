"""Documents into retrieval chunks that follow their structure.

- Markdown and HTML: split at headings; every chunk starts with its heading path
  ("Returns > Refunds") so a passage carries its context; sections are packed by paragraph.
- Plain text: paragraphs packed up to the chunk size.
- CSV: one row per chunk, "col: value; col: value" when the first row is a header, else
  "value, value".
A block longer than the chunk size is cut at line, then sentence, then word boundaries, and
only those cut pieces overlap a little, so a sentence on the cut is whole in one of them.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

from agent_core.models import ContentType

MAX_CHUNK_CHARS = 1000
OVERLAP_CHARS = 150
# A heading path longer than this is shortened so the body keeps most of the chunk.
MAX_PATH_CHARS = 200
PATH_SEP = " > "

SENTENCE_END = re.compile(r"(?<=[.!?…。])\s+")
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
WHITESPACE = re.compile(r"\s+")


@dataclass
class Section:
    path: tuple[str, ...]
    blocks: list[str] = field(default_factory=list)


def _units(block: str, limit: int) -> Iterator[tuple[str, str]]:
    """(piece, separator before it): pieces of at most `limit` chars, cut at line, then
    sentence, then word boundaries."""
    for line in block.split("\n"):
        if len(line) <= limit:
            yield line, "\n"
            continue
        sep = "\n"
        for sentence in SENTENCE_END.split(line):
            if len(sentence) <= limit:
                yield sentence, sep
                sep = " "
                continue
            words: list[str] = []
            size = 0
            for word in sentence.split(" "):
                while len(word) > limit:
                    if words:
                        yield " ".join(words), sep
                        words, size, sep = [], 0, " "
                    yield word[:limit], sep
                    word, sep = word[limit:], ""
                if words and size + 1 + len(word) > limit:
                    yield " ".join(words), sep
                    words, size, sep = [], 0, " "
                words.append(word)
                size += len(word) + (1 if len(words) > 1 else 0)
            if words:
                yield " ".join(words), sep
                sep = " "


def _join(units: list[tuple[str, str]]) -> str:
    return "".join(sep + text if i else text for i, (text, sep) in enumerate(units))


def split_block(block: str, limit: int = MAX_CHUNK_CHARS, overlap: int = OVERLAP_CHARS) -> list[str]:
    """A block cut into pieces of at most `limit` chars; each piece repeats the tail of the previous one."""
    if len(block) <= limit:
        return [block]
    pieces: list[list[tuple[str, str]]] = [[]]
    size = 0
    for unit in _units(block, limit):
        if not unit[0].strip():
            continue
        current = pieces[-1]
        if current and size + len(unit[1]) + len(unit[0]) > limit:
            carried: list[tuple[str, str]] = []
            carried_size = 0
            for prev in reversed(current[1:]):
                grown = carried_size + len(prev[0]) + len(prev[1])
                if grown > overlap or grown + len(unit[0]) + len(unit[1]) > limit:
                    break
                carried.insert(0, prev)
                carried_size = grown
            if not carried:
                # The last sentence alone is longer than the overlap: repeat its last words.
                tail = current[-1][0][-overlap:]
                tail = tail[tail.find(" ") + 1 :] if " " in tail else ""
                if tail and len(tail) + 1 + len(unit[0]) <= limit:
                    carried = [(tail, "")]
            pieces.append(carried)
            current = carried
            size = len(_join(carried))
        size += len(unit[0]) + (len(unit[1]) if current else 0)
        current.append(unit)
    return [_join(p).strip() for p in pieces if p]


def pack(blocks: Iterable[str], limit: int = MAX_CHUNK_CHARS) -> list[str]:
    """Consecutive blocks joined (blank line between) while they fit; long blocks cut with overlap."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for raw in blocks:
        block = raw.strip()
        if not block:
            continue
        if len(block) > limit:
            if current:
                out.append("\n\n".join(current))
                current, size = [], 0
            out.extend(split_block(block, limit))
            continue
        if current and size + 2 + len(block) > limit:
            out.append("\n\n".join(current))
            current, size = [], 0
        size += len(block) + (2 if current else 0)
        current.append(block)
    if current:
        out.append("\n\n".join(current))
    return out


def _path_text(path: tuple[str, ...]) -> str:
    text = PATH_SEP.join(p for p in path if p)
    if len(text) > MAX_PATH_CHARS:
        text = "…" + text[-(MAX_PATH_CHARS - 1) :]
    return text


def render_sections(sections: Iterable[Section], limit: int = MAX_CHUNK_CHARS) -> list[str]:
    chunks: list[str] = []
    for section in sections:
        heading = _path_text(section.path)
        body_limit = limit - len(heading) - 2 if heading else limit
        for body in pack(section.blocks, body_limit):
            chunks.append(f"{heading}\n\n{body}" if heading else body)
    return chunks


def chunk_text(text: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    return pack(PARAGRAPH_BREAK.split(text), limit)


ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
MD_MARKS = re.compile(r"[*`]+|(?<!\w)_+|_+(?!\w)")
FRONT_MATTER = re.compile(r"\A---\n.*?\n(?:---|\.\.\.)\n", re.DOTALL)


class _Outline:
    """Sections under a stack of headings; shared by the Markdown and HTML readers."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, str]] = []
        self.sections: list[Section] = [Section(())]

    def heading(self, level: int, title: str) -> None:
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, " ".join(title.split())))
        self.sections.append(Section(tuple(t for _, t in self.stack)))

    def block(self, text: str) -> None:
        if text.strip():
            self.sections[-1].blocks.append(text)


def _heading_text(title: str) -> str:
    """A Markdown heading as plain words: links become their text, emphasis marks go."""
    return MD_MARKS.sub("", MD_LINK.sub(r"\1", title)).strip()


def markdown_sections(text: str) -> list[Section]:
    text = FRONT_MATTER.sub("", text, count=1)
    outline = _Outline()
    para: list[str] = []
    fence: str | None = None

    def flush() -> None:
        if para:
            outline.block("\n".join(para).strip("\n"))
            para.clear()

    for line in text.split("\n"):
        if fence is not None:
            para.append(line)
            if line.strip().startswith(fence):
                fence = None
                flush()
            continue
        opened = FENCE.match(line)
        if opened:
            flush()
            fence = opened.group(1)[0] * 3
            para.append(line)
            continue
        atx = ATX.match(line)
        if atx:
            flush()
            outline.heading(len(atx.group(1)), _heading_text(atx.group(2) or ""))
            continue
        setext = SETEXT.match(line)
        if setext and len(para) == 1 and para[0].strip():
            title = para.pop()
            outline.heading(1 if setext.group(1)[0] == "=" else 2, _heading_text(title))
            continue
        if not line.strip() or (setext and setext.group(1)[0] == "-" and len(setext.group(1)) >= 3):
            flush()
            continue
        para.append(line.rstrip())
    flush()
    return outline.sections


def chunk_markdown(text: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    return render_sections(markdown_sections(text), limit)


class _HTMLReader(HTMLParser):
    SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe", "object", "select"})
    BLOCK = frozenset(
        {
            "p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "ul", "ol", "li",
            "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr", "blockquote", "pre", "form",
            "fieldset", "figure", "figcaption", "address", "details", "summary", "hr", "body", "caption",
        }
    )  # fmt: skip
    HEADINGS = {f"h{i}": i for i in range(1, 7)}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.outline = _Outline()
        self.buf: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.heading_level = 0
        self.heading_buf: list[str] = []
        self.cells_in_row = 0

    def _flush(self) -> None:
        text = "".join(self.buf)
        lines = [" ".join(ln.split()) for ln in text.split("\n")] if not self.pre_depth else text.split("\n")
        self.outline.block("\n".join(ln for ln in lines if ln.strip()))
        self.buf.clear()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skip_depth += 1
            return
        if self.skip_depth:
            return
        if tag in self.HEADINGS:
            self._flush()
            self.heading_level = self.HEADINGS[tag]
            self.heading_buf.clear()
        elif tag in self.BLOCK:
            self._flush()
            if tag == "pre":
                self.pre_depth += 1
            elif tag == "li":
                self.buf.append("- ")
            elif tag == "tr":
                self.cells_in_row = 0
        elif tag in ("td", "th"):
            if self.cells_in_row:
                self.buf.append(" | ")
            self.cells_in_row += 1
        elif tag == "br":
            self.buf.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip_depth = max(self.skip_depth - 1, 0)
            return
        if self.skip_depth:
            return
        if tag in self.HEADINGS and self.heading_level:
            self.outline.heading(self.heading_level, "".join(self.heading_buf))
            self.heading_level = 0
        elif tag in self.BLOCK:
            self._flush()
            if tag == "pre":
                self.pre_depth = max(self.pre_depth - 1, 0)

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if not self.pre_depth:
            # Source line breaks are not text in HTML (only <br> and blocks are).
            data = WHITESPACE.sub(" ", data)
        (self.heading_buf if self.heading_level else self.buf).append(data)

    def close(self) -> None:
        super().close()
        if self.heading_level:
            self.outline.heading(self.heading_level, "".join(self.heading_buf))
        self._flush()


def html_sections(text: str) -> list[Section]:
    reader = _HTMLReader()
    reader.feed(text)
    reader.close()
    return reader.outline.sections


def chunk_html(text: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    return render_sections(html_sections(text), limit)


NUMERIC = re.compile(r"^[\s$€£¥+\-(]*\d[\d\s.,:/%)\-]*[a-zA-Z%]{0,3}$")
CSV_SAMPLE_CHARS = 64 * 1024
LABEL_MAX_CHARS = 40
LABEL_MAX_WORDS = 4


def _numeric(cell: str) -> bool:
    return bool(NUMERIC.match(cell.strip()))


def _label_like(cell: str) -> bool:
    return len(cell) <= LABEL_MAX_CHARS and len(cell.split()) <= LABEL_MAX_WORDS


def has_header(rows: list[list[str]], sample: str) -> bool:
    """Whether the first row names the columns.

    The first row must be unique, non-empty, non-numeric labels, and the data must read
    unlike them: a column of numbers under a label, prose under short labels, or (with a few
    rows to judge from) `csv.Sniffer`'s own header vote.
    """
    if len(rows) < 2:
        return False
    first = [c.strip() for c in rows[0]]
    if not first or any(not c or _numeric(c) for c in first):
        return False
    if len({c.lower() for c in first}) != len(first):
        return False
    data = [[c.strip() for c in row] for row in rows[1:51]]
    for col in range(len(first)):
        cells = [row[col] for row in data if col < len(row) and row[col]]
        if cells and sum(_numeric(c) for c in cells) * 2 >= len(cells):
            return True
    if all(_label_like(c) for c in first) and any(not _label_like(c) for row in data for c in row if c):
        return True
    if len(data) < 3:
        return False
    try:
        return csv.Sniffer().has_header(sample)
    except csv.Error:
        return False


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def csv_rows(text: str) -> tuple[list[str] | None, list[list[str]]]:
    """(header or None, data rows) of a CSV text; blank rows dropped."""
    sample = text[:CSV_SAMPLE_CHARS]
    if len(text) > CSV_SAMPLE_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]
    try:
        rows = [row for row in csv.reader(io.StringIO(text), _dialect(sample)) if any(c.strip() for c in row)]
    except csv.Error:
        rows = [row for row in csv.reader(io.StringIO(text), csv.excel) if any(c.strip() for c in row)]
    if has_header(rows, sample):
        return [c.strip() for c in rows[0]], rows[1:]
    return None, rows


def render_row(header: list[str] | None, row: list[str]) -> str:
    if header is None:
        return ", ".join(c.strip() for c in row if c.strip())
    pairs = []
    for i, cell in enumerate(row):
        value = " ".join(cell.split())
        if value:
            label = header[i] if i < len(header) else f"column {i + 1}"
            pairs.append(f"{label}: {value}")
    return "; ".join(pairs)


def chunk_csv(text: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    header, rows = csv_rows(text)
    chunks: list[str] = []
    for row in rows:
        rendered = render_row(header, row)
        if rendered:
            chunks.extend(split_block(rendered, limit))
    return chunks


def chunk_document(text: str, content_type: ContentType, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    """The document's chunks, in document order (empty only if it has no text at all)."""
    if content_type is ContentType.markdown:
        return chunk_markdown(text, limit)
    if content_type is ContentType.html:
        return chunk_html(text, limit)
    if content_type is ContentType.csv:
        return chunk_csv(text, limit)
    return chunk_text(text, limit)
