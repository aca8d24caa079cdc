"""Uploaded bytes into validated text: content type detection, size, encoding and binary checks.

Every rejection is a `DocumentError` whose message names the field and the reason, so the
HTTP edge and the CLI can show it as is.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from agent_core.models import ContentType

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
MAX_NAME_CHARS = 200
# Share of control characters (other than tab, newline, carriage return and form feed) above
# which a text is taken for binary data that merely happens to decode.
MAX_CONTROL_SHARE = 0.01
CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


ALIASES: dict[str, ContentType] = {
    "text/plain": ContentType.plain,
    "text/markdown": ContentType.markdown,
    "text/x-markdown": ContentType.markdown,
    "text/csv": ContentType.csv,
    "application/csv": ContentType.csv,
    "text/comma-separated-values": ContentType.csv,
    "text/html": ContentType.html,
    "application/xhtml+xml": ContentType.html,
}
EXTENSIONS: dict[str, ContentType] = {
    ".txt": ContentType.plain,
    ".text": ContentType.plain,
    ".md": ContentType.markdown,
    ".markdown": ContentType.markdown,
    ".csv": ContentType.csv,
    ".html": ContentType.html,
    ".htm": ContentType.html,
}
# Declared types that say nothing about the content (clients send them for any file).
GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/unknown"})


class DocumentError(ValueError):
    """A document that cannot be accepted; the message names the field and says why."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


class DocumentErrors(DocumentError):
    """Several problems at once (every bad field named)."""

    def __init__(self, problems: list[DocumentError]) -> None:
        super().__init__("; ".join(str(p) for p in problems), too_large=any(p.too_large for p in problems))
        self.messages = [str(p) for p in problems]


@dataclass(frozen=True, slots=True)
class DocumentText:
    name: str
    content_type: ContentType
    text: str
    size_bytes: int
    sha256: str


def human_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


def check_size(size: int, limit: int = MAX_DOCUMENT_BYTES, field: str = "file") -> None:
    if size > limit:
        raise DocumentError(f"{field}: {human_size(size)} is larger than the {human_size(limit)} limit", too_large=True)


def check_name(name: str | None, field: str = "name") -> str:
    if name is None or not name.strip():
        raise DocumentError(f"{field}: is required (or upload a file with a file name)")
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise DocumentError(f"{field}: must be at most {MAX_NAME_CHARS} characters")
    if CONTROL.search(name) or "\n" in name or "\r" in name:
        raise DocumentError(f"{field}: must not contain control characters")
    return name


def detect_content_type(declared: str | None, filename: str | None, field: str = "content_type") -> ContentType:
    """The declared type when it is a specific supported one, else the file extension, else plain text."""
    base = (declared or "").split(";", 1)[0].strip().lower()
    ext = PurePosixPath((filename or "").replace("\\", "/")).suffix.lower()
    by_ext = EXTENSIONS.get(ext)
    if base in ALIASES and ALIASES[base] is not ContentType.plain:
        return ALIASES[base]
    if base in ALIASES or base in GENERIC:
        # Many clients label any text file text/plain (or octet-stream): the extension is the better hint.
        return by_ext or ContentType.plain
    if base == "application/pdf" or ext == ".pdf":
        raise DocumentError(f"{field}: PDF is not supported; upload the document's text (plain, Markdown or HTML)")
    supported = ", ".join(t.value for t in ContentType)
    raise DocumentError(f"{field}: '{base}' is not supported; use one of {supported}")


def decode_text(raw: bytes, field: str = "file") -> str:
    """UTF-8 (a BOM is dropped) with newlines normalised; binary data and other encodings are refused."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DocumentError(f"{field}: is UTF-16 encoded; save it as UTF-8")
    if b"\x00" in raw:
        raise DocumentError(f"{field}: looks like binary data (it contains NUL bytes); upload a text document")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise DocumentError(
            f"{field}: is not valid UTF-8 (byte 0x{bad} at offset {exc.start}); save it as UTF-8"
        ) from None
    return check_text(text, field)


def check_text(text: str, field: str = "text") -> str:
    if "\x00" in text:
        raise DocumentError(f"{field}: looks like binary data (it contains NUL characters)")
    controls = len(CONTROL.findall(text))
    if controls and controls > MAX_CONTROL_SHARE * len(text):
        raise DocumentError(f"{field}: looks like binary data ({controls} control characters)")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DocumentError(f"{field}: is empty")
    return text


def content_hash(name: str, text: str) -> str:
    """What makes two documents the same (idempotent imports): their name and their text."""
    return hashlib.sha256(name.encode("utf-8") + b"\x00" + text.encode("utf-8")).hexdigest()


def read_upload(
    raw: bytes,
    *,
    name: str | None,
    declared_type: str | None,
    filename: str | None,
    limit: int = MAX_DOCUMENT_BYTES,
) -> DocumentText:
    """Validate an uploaded file (CPU-bound for large files: run it off the event loop)."""
    problems: list[DocumentError] = []
    try:
        doc_name = check_name(name or filename)
    except DocumentError as exc:
        problems.append(exc)
        doc_name = ""
    try:
        ctype = detect_content_type(declared_type, filename or name, field="file")
    except DocumentError as exc:
        problems.append(exc)
        ctype = ContentType.plain
    if problems:
        raise DocumentErrors(problems)
    check_size(len(raw), limit)
    text = decode_text(raw)
    return DocumentText(doc_name, ctype, text, len(raw), content_hash(doc_name, text))


def read_text(
    text: str, *, name: str | None, content_type: str | None, limit: int = MAX_DOCUMENT_BYTES
) -> DocumentText:
    """Validate a document given as text (JSON bodies, files read by the CLI)."""
    problems: list[DocumentError] = []
    try:
        doc_name = check_name(name)
    except DocumentError as exc:
        problems.append(exc)
        doc_name = ""
    try:
        ctype = detect_content_type(content_type, name)
    except DocumentError as exc:
        problems.append(exc)
        ctype = ContentType.plain
    size = 0
    try:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise DocumentError(f"text: is not valid Unicode (a lone surrogate at offset {exc.start})") from None
        check_size(size, limit, "text")
        text = check_text(text, "text")
    except DocumentError as exc:
        problems.append(exc)
    if problems:
        raise DocumentErrors(problems)
    return DocumentText(doc_name, ctype, text, size, content_hash(doc_name, text))


def messages_of(exc: DocumentError) -> list[str]:
    return exc.messages if isinstance(exc, DocumentErrors) else [str(exc)]
