"""Deadline arithmetic for one request: pure, no I/O, no clock of its own.

The total time is the client's deadline, or the configured default when the
client sent none, capped by the configured maximum (a client asking for an
hour must not pin root resources for an hour). The shards get the total
minus a reserve kept for the answer; when nothing useful is left the request
fails at once with DEADLINE_EXCEEDED instead of fanning out work that can
only be thrown away.

The reserve has two parts (issue "faults under load": answers the root
counted as OK reached their client after its deadline, because a shard
deadline timer fired up to 6 ms late, the merge and the answer took 3-10 ms
more, and the trip back 2-9 ms, more than a fixed 10 ms):

- ``merge_reserve``, fixed: what the root cannot see, the answer's trip back
  to the client (and the request's trip in, which the client's deadline
  already spent), plus a margin for a pause;
- measured (``AnswerTimes``, when ``adaptive_reserve`` is on): the recent
  p99 of the time from the moment the shards were due to be over (the shard
  deadline, or the last shard's answer if that came first) to the answer
  being handed to gRPC. That is the timer's lateness, the merge call and
  the encoding, as they are on this machine under its current load. It is
  capped at half of the total, so a merge that has gone slow cannot leave
  the shards nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from root.errors import DeadlineTooShort
from root.policies._validate import FieldError, check_at_least, check_float
from root.policies.latency import LatencyWindow, LatencyWindowConfig

# Below this, a shard call cannot even cross loopback and back (a gRPC unary
# call costs ~0.15 ms each way here); fanning out would only waste leaf work.
MIN_SHARD_BUDGET = 0.001


@dataclass(frozen=True)
class Budget:
    """Seconds, relative to the request's arrival."""

    total: float  # until the answer must be back at the client
    shards: float  # until every shard call must be over


@dataclass(frozen=True)
class DeadlinePolicy:
    default: float
    maximum: float
    merge_reserve: float
    adaptive_reserve: bool = True

    def __post_init__(self) -> None:
        check_float("deadlines.default", self.default, low=0.0, low_open=True)
        check_float("deadlines.maximum", self.maximum, low=0.0, low_open=True)
        check_at_least("deadlines.maximum", self.maximum, "deadlines.default", self.default)
        check_float("deadlines.merge_reserve", self.merge_reserve, low=0.0)
        if self.merge_reserve >= self.default:
            raise FieldError(
                "deadlines.merge_reserve", self.merge_reserve, "must be below {ref0} ({0})", (self.default,),
                ("deadlines.default",),
            )  # fmt: skip

    def budget(self, client_remaining: float | None, measured: float = 0.0) -> Budget:
        """The budget for a request whose client allows ``client_remaining`` seconds (None: no deadline).

        ``measured``: the measured part of the reserve (``AnswerTimes.reserve``);
        ignored unless ``adaptive_reserve``.
        """
        total = self.default if client_remaining is None else min(client_remaining, self.maximum)
        reserve = self.merge_reserve
        if self.adaptive_reserve and measured > 0.0:
            reserve += min(measured, total / 2)
        shards = total - reserve
        if shards < MIN_SHARD_BUDGET:
            raise DeadlineTooShort(
                f"deadline of {max(total, 0) * 1000:.1f} ms leaves no time for the shards after the "
                f"{reserve * 1000:.1f} ms reserved for the merge and the answer; send a longer deadline"
            )
        return Budget(total=total, shards=shards)


# The p99: one answer in a hundred may use more than its reserve, and then
# only by its excess over the fixed part. Ten seconds of history at most, the
# newest 20 when the root is quiet (as the latency windows do).
ANSWER_PERCENTILE = 0.99
ANSWER_WINDOW = LatencyWindowConfig(size=512, recompute_every=16, max_age=10.0, keep_newest=20)


class AnswerTimes:
    """Recent times from "the shards are due" to "the answer is handed to gRPC", and their p99.

    ``record(seconds, now)`` once per answered request; ``reserve(now)`` is
    the measured part of the next request's reserve (0 before any sample).
    """

    __slots__ = ("_window",)

    def __init__(self, config: LatencyWindowConfig = ANSWER_WINDOW) -> None:
        self._window = LatencyWindow(config)

    def record(self, seconds: float, now: float) -> None:
        if seconds >= 0.0 and math.isfinite(seconds):
            self._window.record(seconds, now)

    def reserve(self, now: float) -> float:
        value = self._window.percentile(ANSWER_PERCENTILE, now)
        return 0.0 if value is None else value
