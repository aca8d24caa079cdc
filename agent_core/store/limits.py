"""Request rate limits: the sender throttle's GCRA (lua/throttle.lua) in its refusing mode.

A `Rate` lets `burst` hits through at once, then one every `period_s / count` on average; a
hit it refuses reserves nothing and says how long until one would fit (the 429's
Retry-After). One mechanism for every limit: API tokens, widget visitors, IPs, new sessions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent_core.models import now_ms
from agent_core.store import keys
from agent_core.store.runner import Lua, Op


@dataclass(frozen=True, slots=True)
class Rate:
    """`count` hits per `period_s`, `burst` of them back to back (default: `count`)."""

    count: float
    period_s: float
    burst: int | None = None

    @property
    def enabled(self) -> bool:
        return self.count > 0 and self.period_s > 0

    @property
    def interval_ms(self) -> float:
        return self.period_s * 1000.0 / self.count

    @property
    def tolerance_ms(self) -> int:
        burst = self.burst if self.burst is not None else max(1, math.floor(self.count))
        return int(self.interval_ms * (max(burst, 1) - 1))


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_ms: int = 0

    @property
    def retry_after_s(self) -> int:
        """Whole seconds for a Retry-After header (at least 1 when refused)."""
        return max(1, math.ceil(self.retry_after_ms / 1000)) if not self.allowed else 0


ALLOWED = Verdict(True)


def hit(scope: str, subject: str, rate: Rate, cost: int = 1) -> Op[Verdict]:
    """Count one hit of `subject` against the limit `scope` (a disabled rate allows all)."""
    if not rate.enabled:
        return ALLOWED
    reply = yield Lua(
        "throttle", keys.rate_limit(scope, subject), rate.interval_ms, cost, now_ms(), rate.tolerance_ms, "limit"
    )
    if int(reply[0]) == 0:
        return Verdict(False, int(reply[1]))
    return ALLOWED
