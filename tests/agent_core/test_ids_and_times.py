"""Ids and timestamps made on every inbound message keep the formats they always had."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from agent_core.models import iso, uuid4_hex, uuid4_str


def test_uuid4_hex_and_str_are_random_version_4_uuids() -> None:
    made = {uuid4_hex() for _ in range(1000)}
    assert len(made) == 1000
    for h in list(made)[:50]:
        u = uuid.UUID(hex=h)
        assert u.hex == h and u.version == 4 and u.variant == uuid.RFC_4122
    s = uuid4_str()
    assert str(uuid.UUID(s)) == s and uuid.UUID(s).version == 4


def test_iso_is_utc_with_truncated_milliseconds_and_z() -> None:
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC)) == "2026-01-02T03:04:05.999Z"
    assert iso(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00.000Z"
    plus5 = timezone(timedelta(hours=5))
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 1_500, tzinfo=plus5)) == "2026-01-01T22:04:05.001Z"
