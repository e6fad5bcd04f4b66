"""Replica choice and outlier ejection for the replicas of one shard.

What lives here: ``ReplicaConfig``, ``ReplicaSet`` (which replica gets the next
attempt, and the bookkeeping that decides it), ``FailureKind`` with its view
of the status table (``scatter_common.status``, column "health"), and
``ReplicaStatus`` for the status page. What does not: sending calls, timers,
or whether an attempt may be retried at all (``hedging.py`` decides fatal vs
non-fatal).

Call order, per attempt: ``i = pick(exclude)``, then ``start(i)`` when the
call is sent, then exactly one ``finish(i, latency, ok, failure_kind)`` when it
ends in any way, cancellation included (``outstanding`` counts on it).

Choice (``pick``):
1. skip replicas in ``exclude`` (for a hedge or failover: those already tried);
2. skip ejected and down replicas (below), unless every remaining candidate
   is: then a down one, else the one whose ejection ends soonest is used (a
   last resort beats failing the shard; see "never all" below);
3. lowest expected wait first: ``(outstanding + 1) * latency EWMA``, the
   cost of Linkerd's and Finagle's peak-EWMA balancers. Least-outstanding
   alone (as before) sent a hung replica every other call at low
   concurrency, where both replicas have nothing outstanding, and kept a 10x
   slower replica in the rotation whenever it had fewer calls in flight;
4. a replica with no samples, or whose newest sample is older than
   ``ewma_stale_after``, is costed at the lowest EWMA among the candidates
   (0 if none has one): new replicas get tried at once, and a replica that
   was slow once is looked at again later instead of being shunned forever.
   Except a *suspect*: a replica whose newest news is a fault (below) keeps
   its EWMA however old, so a replica that lost a race gets no first
   attempts while a sibling answers faster; it is looked at again by hedges,
   by the sibling's load, or by the probes that end its ejection;
5. ties by fewer outstanding, then by rotation: the scan starts after the
   last pick, so equal replicas share the load;
6. before all of these, for a first attempt: an address the request's other
   shards already chose (``prefer``) wins if it is one of this shard's
   replicas and not ejected, down or a suspect. A leaf process serving
   several shards then gets one ExecuteShards call for all of them
   (root.scatter) instead of splitting them over its replicas; the first
   shard's choice, by the rules above, balances the load for the group.
``pick`` returns None when every replica is excluded; for a third attempt on a
two-replica shard the caller may then ``pick()`` again without exclusions.

Latency EWMA: ``ewma += ewma_alpha * (sample - ewma)``; the first sample, and
the first after the EWMA has gone stale, are taken as they are (a second-old
average says nothing about now). Only answers feed it, plus censored
observations that can only raise it: a TIMEOUT, or a CANCELLED attempt (lost
the race) that had already run longer than the EWMA says, is evidence of
slowness; a lost race that was a fault raises it to the time the attempt had
run, at once (a peak, as in peak EWMA). A censored attempt shorter than the
EWMA is no news and leaves it, and its age, alone (a stale one is replaced
by it): a slow replica that only gets its sibling's hedges, each cancelled
early, goes stale and gets a first attempt again, so a hang there is seen.
Fast failures never feed it: a replica that refuses in 0.1 ms would
otherwise look like the fastest and attract all traffic (the black hole of
least-latency balancing).

Ejection counts only what says something about the replica, never about
the request. ``finish`` never counts a failure: the same request fails the
same way on every replica when it is the request's fault (a deadline too
short for its work, an input that makes the leaf raise), so an attempt's own
outcome cannot tell. The attempt plan, which sees the whole shard call,
reports a *replica fault* with ``fault(i)`` when the replica failed where a
sibling succeeded for the same request: it answered UNAVAILABLE (refused,
reset, draining) or it was still running when a later-started attempt on
another replica answered (lost a race it had a head start in). Timeouts,
application errors and overload (RESOURCE_EXHAUSTED) never count.

``consecutive_failures`` faults in a row (Envoy's consecutive-5xx outlier
detection, with faults in place of 5xx) eject a replica for
``base_ejection_time * 2 ** (times_ejected - 1)``, capped at
``max_ejection_time`` (Envoy grows it linearly; doubling backs off faster from
a replica that keeps flapping; ``times_ejected`` stops growing once the cap
is reached). It is back when that time has passed, or sooner, as soon as a
probe finds it healthy (below), with a clean fault count; an answer ends the
streak, and every ``decay_after_successes`` successes in a row then take one
off ``times_ejected``. Outcomes of calls
that finish while their replica is ejected are ignored (they were sent
before it was). We considered Envoy's success-rate ejection instead: it
compares each host with the cluster's mean and needs five hosts by default,
while a shard has two or three replicas; comparing a replica with the sibling
that answered the same request is the per-request form of the same idea.
Never all: at most ``max(1, floor(n * max_ejection_percent / 100))`` replicas
are ejected at once (Envoy's rule, "at least one host regardless"), and never
``n``: a single-replica shard is never ejected, since there is nowhere else to
go. A replica reaching the threshold while the cap is full is not ejected; it
is ejected on its next failure if a place has freed up by then.

Probes (``due_probes()`` names the replicas to probe now, the caller checks
each, ``root.probing`` with its gRPC health service, and reports
``probe_result(i, healthy)``) do two things:

- *A suspect is probed at once*, at most once per ``probe_interval``, and
  so is a replica whose last ``PROBE_AFTER_UNANSWERED`` attempts all ran
  longer than its EWMA without an answer (a hung replica that only gets
  its sibling's hedges, which it cannot lose with a head start): a
  fault makes the replica a suspect (no first attempts while a sibling is
  faster, rule 4), and a suspect that does not answer its health check
  (hung, killed, draining) is ejected then, without waiting for
  ``consecutive_failures`` faults: it would only get the hedges of its
  sibling's slow calls, which it cannot win. A suspect that answers is only
  slow, and cost-based choice keeps sending it what its speed deserves; it
  is probed again every ``probe_interval`` for as long as it is a suspect
  (until it answers a call). Its EWMA is held high (rule 4), so the hedges
  it gets end before they run longer than that EWMA and never count as
  unanswered: without the repeated probe, a suspect that hangs later would
  keep its place and swallow its sibling's hedges. A client cannot cause
  this: a fault is judged against a sibling, and the health check carries
  no request.
- *An ejected replica comes back as soon as it is healthy again* (a
  restarted leaf, a hung one that was continued), instead of after its whole
  ejection. The first probe is due ``probe_interval * 2 ** (times_ejected -
  1)`` after the ejection (capped at the ejection time), then every
  ``probe_interval`` while it fails: a replica that keeps being ejected
  waits longer and longer before its first probe, as its ejection time
  grows (a replica whose health says SERVING while its calls hang would
  otherwise be back every half second). A healthy probe ends the ejection
  and the replica starts afresh: no EWMA, no suspicion, so it gets its
  share of calls at once (``times_ejected`` is kept and decays as usual). A
  probe says "this process answers", not "its calls are fast": a replica
  that comes back and still loses races is a suspect again.

Probes need ejection: with ``consecutive_failures`` None there are none.

Health, as the replica itself reports it (``health(i, serving)``, from the
root's watch of each replica's gRPC health service, ``root.probing``): a
replica reporting NOT_SERVING (loading, or draining after SIGTERM) is *down*:
it gets no calls while a sibling is up, like an ejected one, but it is no
ejection (it counts toward no cap, no ejection time, and no fault). Among
last resorts a down replica comes before an ejected one: a draining process
still takes calls for its drain delay. SERVING again ends being down, and
also ends an ejection at once, as a healthy probe does: the process has
restarted or recovered, and says so.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from root.policies._validate import check_at_least, check_float, check_int
from root.policies.clock import Clock
from scatter_common.status import STATUS

# Envoy outlier detection: consecutive_5xx defaults to 5.
DEFAULT_CONSECUTIVE_FAILURES = 5
# Envoy outlier detection: base_ejection_time defaults to 30 s.
DEFAULT_BASE_EJECTION_TIME = 30.0
# Envoy outlier detection: max_ejection_time defaults to 300 s.
DEFAULT_MAX_EJECTION_TIME = 300.0
# Envoy outlier detection: max_ejection_percent defaults to 10%, but at least
# one host is always ejectable; with the 2-3 replicas of a shard that is one.
DEFAULT_MAX_EJECTION_PERCENT = 10.0
# A judgment call: 100 good answers in a row (well under a second at the demo's
# rates) are enough to forgive one ejection, while a replica that flaps every
# few calls keeps its growing ejection time.
DEFAULT_DECAY_AFTER_SUCCESSES = 100
# 1/4: the EWMA follows a change within a handful of samples; a power of two
# also keeps the arithmetic exact in the tests.
DEFAULT_EWMA_ALPHA = 0.25
# Look again at a replica not sampled for a second (see rule 4 above); at most
# one look per replica per second, which the hedge budget's reserve covers.
DEFAULT_EWMA_STALE_AFTER = 1.0
# Probe an ejected replica twice a second: a restarted leaf carries traffic
# again within about half a second of reporting SERVING (the goal is 2 s),
# and a health check every 0.5 s per ejected replica costs nothing.
DEFAULT_PROBE_INTERVAL = 0.5
# The shortest probe interval: the prober looks at the policies every tenth of it, and a probe
# times out after it, so a microsecond interval spun the idle root at 80% of a core and failed
# every probe. 10 ms is a 1 ms tick (measured: 5% of a core idle), and as often as a health
# check on a network is worth.
MIN_PROBE_INTERVAL = 0.01
# A replica whose last three attempts all ran longer than its EWMA and got no
# answer (hedges it was sent and lost, timeouts) is probed, as a suspect is:
# a hung replica that is no longer given first attempts, so it cannot lose a
# race with a head start, still gets its sibling's hedges, and never answers.
PROBE_AFTER_UNANSWERED = 3


class FailureKind(enum.Enum):
    """How an attempt that did not succeed ended, as far as replica health goes."""

    UNAVAILABLE = "unavailable"  # refused, reset, UNAVAILABLE: a fault if a sibling answered
    TIMEOUT = "timeout"  # no answer by the deadline: the wait can raise the EWMA
    ERROR = "error"  # INTERNAL, UNKNOWN, DATA_LOSS...: the request's doing as far as we can tell
    # The leaf shed the call (RESOURCE_EXHAUSTED): neutral. Ejecting replicas for
    # being overloaded pushes their load onto the rest and cascades.
    OVERLOADED = "overloaded"
    # Lost the race to another attempt, or the request ended: says nothing bad
    # about the replica, except that it was slower than the EWMA if it ran long.
    CANCELLED = "cancelled"
    # The request's own fault (INVALID_ARGUMENT...): the replica did answer, so
    # its failure streak ends, but it is no latency sample.
    REJECTED = "rejected"


# From the one status table (scatter_common.status, column "health").
FAILURE_KIND_BY_STATUS: dict[str, FailureKind] = {code: FailureKind(rule.health) for code, rule in STATUS.items()}
_UNKNOWN_KIND = FAILURE_KIND_BY_STATUS["UNKNOWN"]  # a name the table does not know is UNKNOWN


def failure_kind_for_status(status_code: str) -> FailureKind:
    """The ``FailureKind`` of an attempt that ended with this gRPC status name (not OK)."""
    return FAILURE_KIND_BY_STATUS.get(status_code, _UNKNOWN_KIND)


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """Replica choice and outlier ejection, the same for every shard."""

    # None turns ejection off.
    consecutive_failures: int | None = DEFAULT_CONSECUTIVE_FAILURES
    base_ejection_time: float = DEFAULT_BASE_EJECTION_TIME
    max_ejection_time: float = DEFAULT_MAX_EJECTION_TIME
    max_ejection_percent: float = DEFAULT_MAX_EJECTION_PERCENT
    decay_after_successes: int = DEFAULT_DECAY_AFTER_SUCCESSES
    ewma_alpha: float = DEFAULT_EWMA_ALPHA
    ewma_stale_after: float = DEFAULT_EWMA_STALE_AFTER
    # None turns probing off: an ejected replica waits out its ejection.
    probe_interval: float | None = DEFAULT_PROBE_INTERVAL

    def __post_init__(self) -> None:
        if self.consecutive_failures is not None:
            check_int("replicas.consecutive_failures", self.consecutive_failures, low=1)
        check_float("replicas.base_ejection_time", self.base_ejection_time, low=0.0, low_open=True)
        check_float("replicas.max_ejection_time", self.max_ejection_time, low=0.0, low_open=True)
        check_at_least(
            "replicas.max_ejection_time", self.max_ejection_time, "replicas.base_ejection_time", self.base_ejection_time
        )
        check_float("replicas.max_ejection_percent", self.max_ejection_percent, low=0.0, high=100.0)
        check_int("replicas.decay_after_successes", self.decay_after_successes, low=1)
        check_float("replicas.ewma_alpha", self.ewma_alpha, low=0.0, high=1.0, low_open=True)
        check_float("replicas.ewma_stale_after", self.ewma_stale_after, low=0.0, low_open=True)
        if self.probe_interval is not None:
            check_float("replicas.probe_interval", self.probe_interval, low=MIN_PROBE_INTERVAL)


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """One replica as the status page shows it."""

    index: int
    address: str
    outstanding: int
    ewma: float | None  # seconds; None before the first sample
    ejected: bool
    ejected_until: float | None  # clock time it returns; None when not ejected
    consecutive_failures: int
    times_ejected: int
    ejections: int  # ejections since start, for metrics (times_ejected decays; this does not)
    attempts: int  # attempts started on this replica since start, for metrics
    suspect: bool = False  # its newest news is a fault: its EWMA does not go stale
    down: bool = False  # its health service says NOT_SERVING
    probes: int = 0  # health probes while ejected, since start
    returned: int = 0  # ejections ended early by a healthy probe, since start


class _Replica:
    __slots__ = (
        "attempts",
        "down",
        "ejected_until",
        "ejections",
        "ewma",
        "failures",
        "outstanding",
        "probe_at",
        "probed_at",
        "probes",
        "probing",
        "returned",
        "sampled_at",
        "streak",
        "suspect",
        "times_ejected",
        "unanswered",
    )

    def __init__(self, down: bool = False) -> None:
        self.outstanding = 0
        self.ewma = 0.0
        self.sampled_at = -math.inf  # clock time of the newest EWMA sample; -inf: none yet
        self.ejected_until = -math.inf  # ejected while clock() < ejected_until
        self.failures = 0  # consecutive failures
        self.streak = 0  # consecutive successes, toward decaying times_ejected
        self.times_ejected = 0
        self.ejections = 0
        self.attempts = 0
        self.suspect = False  # the newest news is a fault (rule 4)
        self.down = down  # its health service says NOT_SERVING
        self.unanswered = 0  # attempts in a row that ran longer than its EWMA and got no answer
        self.probe_at = math.inf  # when the next probe is due (ejected, or a suspect)
        self.probed_at = -math.inf  # when the last probe went out
        self.probing = False  # a probe is out; its result has not come back
        self.probes = 0
        self.returned = 0


_NOTHING: frozenset[int] = frozenset()
_NO_ADDRESSES: frozenset[str] = frozenset()


class ReplicaSet:
    """The replicas of one shard: who gets the next attempt, and who is ejected."""

    __slots__ = (
        "_alpha",
        "_base",
        "_clock",
        "_config",
        "_cursor",
        "_decay_after",
        "_max_ejected",
        "_max_time",
        "_max_times",
        "_probe_interval",
        "_reps",
        "_stale_after",
        "_threshold",
        "addresses",
    )

    def __init__(
        self,
        addresses: Sequence[str],
        clock: Clock,
        config: ReplicaConfig = ReplicaConfig(),
        *,
        carry: ReplicaSet | None = None,
    ) -> None:
        """``carry``: a set this one replaces (membership changed, or its config did): replicas
        at an address it has keep their state (the same object, so calls still in flight on
        the old set count for the new one too); new addresses start down, and get calls once
        their health says SERVING. Empty ``addresses``: a discovered shard with none yet."""
        self.addresses: tuple[str, ...] = tuple(addresses)
        if len(set(self.addresses)) != len(self.addresses):
            raise ValueError("the same replica address appears twice")
        n = len(self.addresses)
        self._clock = clock
        self._config = config
        if carry is None:
            self._reps = [_Replica() for _ in range(n)]
        else:
            kept = dict(zip(carry.addresses, carry._reps, strict=True))
            self._reps = [kept.get(address) or _Replica(down=True) for address in self.addresses]
            for address, r in kept.items():
                if address not in self.addresses:
                    r.down = True  # removed: plans still in flight on the old set avoid it
        self._cursor = 0
        self._alpha = config.ewma_alpha
        self._stale_after = config.ewma_stale_after
        self._threshold = config.consecutive_failures
        self._base = config.base_ejection_time
        self._max_time = config.max_ejection_time
        self._decay_after = config.decay_after_successes
        # Probing needs ejection: a failed probe of a suspect ejects it.
        self._probe_interval = config.probe_interval if config.consecutive_failures is not None else None
        # times_ejected stops growing once the ejection time has reached its
        # cap: more would only slow the decay (and 2.0 ** k overflows at 1024).
        k = 1
        while self._base * 2.0 ** (k - 1) < self._max_time:
            k += 1
        self._max_times = k
        self._max_ejected = 0 if n <= 1 else min(n - 1, max(1, math.floor(n * config.max_ejection_percent / 100)))

    def __len__(self) -> int:
        return len(self._reps)

    @property
    def config(self) -> ReplicaConfig:
        return self._config

    def index(self, address: str) -> int | None:
        """The position of the replica at ``address`` in this set, None if it has none."""
        try:
            return self.addresses.index(address)
        except ValueError:
            return None

    def pick(
        self, exclude: AbstractSet[int] = _NOTHING, last_resort: bool = True, prefer: AbstractSet[str] = _NO_ADDRESSES
    ) -> int | None:
        """The replica for the next attempt, or None if every one is excluded.

        ``last_resort=False``: never an ejected replica (None instead), for a
        hedge while another attempt is still in flight: it could not win.
        ``prefer``: addresses the request's other shards chose for their first
        attempts (rule 6); one of them that is a healthy replica here wins.
        """
        now = self._clock()
        reps = self._reps
        n = len(reps)
        if prefer:
            for i, address in enumerate(self.addresses):
                r = reps[i]
                if address in prefer and i not in exclude and r.ejected_until <= now and not r.down and not r.suspect:
                    self._cursor = i + 1 if i + 1 < n else 0
                    return i
        stale_before = now - self._stale_after
        # Rule 4: what a replica without a fresh EWMA is costed at.
        reference = math.inf
        for i in range(n):
            r = reps[i]
            if (
                r.ejected_until <= now
                and not r.down
                and (r.sampled_at >= stale_before or r.suspect)
                and r.ewma < reference
                and i not in exclude
            ):
                reference = r.ewma
        if reference == math.inf:
            reference = 0.0
        best = -1
        best_cost = 0.0
        best_out = 0
        fallback = -1  # a down candidate, else an ejected one whose ejection ends soonest
        fallback_until = math.inf
        i = self._cursor
        for _ in range(n):
            if i not in exclude:
                r = reps[i]
                if r.ejected_until > now or r.down:
                    until = r.ejected_until if r.ejected_until > now else -math.inf
                    if fallback < 0 or until < fallback_until:
                        fallback = i
                        fallback_until = until
                else:
                    out = r.outstanding
                    cost = (out + 1) * (r.ewma if r.sampled_at >= stale_before or r.suspect else reference)
                    if best < 0 or cost < best_cost or (cost == best_cost and out < best_out):
                        best = i
                        best_cost = cost
                        best_out = out
            i += 1
            if i == n:
                i = 0
        if best < 0:
            best = fallback if last_resort else -1
            if best < 0:
                return None
        self._cursor = best + 1 if best + 1 < n else 0
        return best

    def start(self, index: int) -> None:
        """An attempt was sent to replica ``index``."""
        r = self._reps[index]
        r.outstanding += 1
        r.attempts += 1

    def finish(self, index: int, latency: float, ok: bool, failure_kind: FailureKind | None = None) -> None:
        """An attempt on replica ``index`` ended after ``latency`` seconds.

        ``ok`` means it answered successfully; otherwise ``failure_kind`` says
        how it ended (required). See the module docstring for what each changes.
        """
        r = self._reps[index]
        r.outstanding -= 1
        now = self._clock()
        if ok:
            if r.sampled_at < now - self._stale_after:  # none yet, or too old to average with
                r.ewma = latency
            else:
                r.ewma += self._alpha * (latency - r.ewma)
            r.sampled_at = now
            r.unanswered = 0
            if r.ejected_until > now:
                return
            r.suspect = False
            r.failures = 0
            if r.times_ejected:
                r.streak += 1
                if r.streak >= self._decay_after:
                    r.times_ejected -= 1
                    r.streak = 0
            return
        if failure_kind is None:
            raise ValueError("finish(ok=False) needs a failure_kind")
        if failure_kind is FailureKind.CANCELLED or failure_kind is FailureKind.TIMEOUT:
            # Censored: the true latency is at least this, so it may only raise a
            # fresh EWMA, and only an attempt that ran longer than that EWMA is news
            # (a fresh look at the replica). One cut short before says nothing: a
            # hedge cancelled because its sibling answered first would otherwise
            # keep a slow replica's EWMA fresh for ever, so it never got a first
            # attempt again, and a hang there was never seen (CI). A stale EWMA
            # says nothing either: the attempt's time replaces it.
            if latency > r.ewma:
                r.unanswered += 1  # ran longer than usual, and no answer
                if r.unanswered >= PROBE_AFTER_UNANSWERED:
                    self._want_probe(r, now)
            if r.sampled_at < now - self._stale_after:
                r.ewma = latency
                r.sampled_at = now
            elif latency > r.ewma:
                r.ewma += self._alpha * (latency - r.ewma)
                r.sampled_at = now
        elif failure_kind is FailureKind.REJECTED and r.ejected_until <= now:
            r.failures = 0  # it answered, if only to refuse the request: the fault streak is over

    def fault(self, index: int, elapsed: float | None = None) -> None:
        """Replica ``index`` failed where a sibling succeeded for the same request (module docstring).

        ``elapsed``: for a lost race, how long the attempt had run; its EWMA
        rises to that at once.
        """
        r = self._reps[index]
        now = self._clock()
        if r.ejected_until > now:
            return
        r.suspect = True
        if elapsed is not None and elapsed > r.ewma:
            r.ewma = elapsed
            r.sampled_at = now
        r.failures += 1
        r.streak = 0
        if self._threshold is not None and r.failures >= self._threshold:
            self._maybe_eject(r, now)
        self._want_probe(r, now)  # a suspect: is it alive at all?

    def _want_probe(self, r: _Replica, now: float) -> None:
        """Probe a replica that is not ejected as soon as the rate limit allows."""
        interval = self._probe_interval
        if interval is not None and r.ejected_until <= now and not r.probing:
            r.probe_at = max(now, r.probed_at + interval)

    def _maybe_eject(self, r: _Replica, now: float) -> None:
        ejected = 0
        for other in self._reps:
            if other.ejected_until > now:
                ejected += 1
        if ejected >= self._max_ejected:
            return
        if r.times_ejected < self._max_times:
            r.times_ejected += 1
        r.ejections += 1
        duration = min(self._base * 2.0 ** (r.times_ejected - 1), self._max_time)
        r.ejected_until = now + duration
        if self._probe_interval is not None:
            r.probe_at = now + min(self._probe_interval * 2.0 ** (r.times_ejected - 1), duration)
        r.failures = 0
        r.streak = 0
        r.suspect = False  # back afresh, by a probe or when the ejection ends
        r.unanswered = 0

    def due_probes(self) -> list[int]:
        """Replicas to probe now (ejected, or suspects); each is marked as being probed.

        Report each one's outcome with ``probe_result`` (module docstring).
        """
        now = self._clock()
        due = []
        for i, r in enumerate(self._reps):
            if r.probe_at <= now and not r.probing and (r.suspect or r.unanswered or r.ejected_until > now):
                r.probing = True
                r.probes += 1
                r.probed_at = now
                r.probe_at = math.inf
                due.append(i)
        return due

    def probe_result(self, index: int, healthy: bool) -> None:
        """The probe of replica ``index`` came back.

        Ejected: ``healthy`` ends the ejection now. A suspect: not ``healthy``
        ejects it now.
        """
        r = self._reps[index]
        r.probing = False
        now = self._clock()
        if r.ejected_until <= now:
            if not healthy and (r.suspect or r.unanswered >= PROBE_AFTER_UNANSWERED):  # not cleared meanwhile
                self._maybe_eject(r, now)
            elif healthy and r.suspect:
                self._want_probe(r, now)  # still a suspect: looked at again in a probe interval
            return
        interval = self._probe_interval
        if not healthy:
            r.probe_at = now + (interval if interval is not None else math.inf)
            return
        self._readmit(r, now)

    def health(self, index: int, serving: bool) -> None:
        """Replica ``index``'s health service reported SERVING (True) or NOT_SERVING (module docstring)."""
        r = self._reps[index]
        if not serving:
            r.down = True
            return
        now = self._clock()
        if r.ejected_until > now:
            self._readmit(r, now)
        elif r.down:
            r.down = False
            self._afresh(r)

    def _readmit(self, r: _Replica, now: float) -> None:
        r.ejected_until = now
        r.probe_at = math.inf
        r.returned += 1
        r.down = False
        self._afresh(r)

    @staticmethod
    def _afresh(r: _Replica) -> None:
        r.suspect = False
        r.unanswered = 0
        r.sampled_at = -math.inf  # costed like its fastest sibling (rule 4)
        r.ewma = 0.0
        r.failures = 0

    def status(self) -> tuple[ReplicaStatus, ...]:
        """Per-replica state for the status page (allocates; not for the hot path)."""
        now = self._clock()
        return tuple(
            ReplicaStatus(
                index=i,
                address=self.addresses[i],
                outstanding=r.outstanding,
                ewma=None if r.sampled_at == -math.inf else r.ewma,
                ejected=r.ejected_until > now,
                ejected_until=r.ejected_until if r.ejected_until > now else None,
                consecutive_failures=r.failures,
                times_ejected=r.times_ejected,
                ejections=r.ejections,
                attempts=r.attempts,
                suspect=r.suspect,
                down=r.down,
                probes=r.probes,
                returned=r.returned,
            )
            for i, r in enumerate(self._reps)
        )
