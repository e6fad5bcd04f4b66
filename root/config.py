"""The root's configuration: a TOML file, validated into frozen dataclasses.

Every rule about what a valid configuration is lives here, and every error
names the field and says what to write instead (an unknown key gets a "did
you mean"). Durations are written in milliseconds with an ``_ms`` suffix and
held in seconds. Example::

    [root]
    listen = "127.0.0.1:50051"
    default_deadline_ms = 1000
    min_coverage = 1.0

    [merge]
    address = "127.0.0.1:50060"

    [[shards]]
    replicas = ["127.0.0.1:50061", "127.0.0.1:50062"]
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from root.errors import ConfigError
from root.policies import (
    PARTIAL_COVERAGE_WAIT,
    PARTIAL_COVERAGE_WAIT_FACTOR,
    CoverageWaitConfig,
    DeadlinePolicy,
    HedgeBudgetConfig,
    HedgingConfig,
    LatencyWindowConfig,
    ReplicaConfig,
    delay_percentile_for,
)
from scatter_common.addresses import AddressError, validate
from scatter_common.serving import DEFAULT_GRACE_SECONDS, DEFAULT_MAX_MESSAGE_BYTES
from scatter_common.tls import ClientTls, ServerTls

DEFAULT_LISTEN = "127.0.0.1:50051"
# One second covers an interactive search with room for a hedge or two;
# clients that need more send their own deadline.
DEFAULT_DEADLINE_MS = 1000.0
# A client deadline above this is capped: no request may hold root resources
# for longer (Elasticsearch's search.default_search_timeout is unbounded, and
# a stuck request then holds its slot forever).
DEFAULT_MAX_DEADLINE_MS = 30_000.0
# The fixed part of the reserve (root/policies/deadlines.py): the trip back to
# the client, which the root cannot measure (2-9 ms here under load), and a
# GC pause; the merge itself (~1 ms for a top-k) is measured and added.
DEFAULT_MERGE_RESERVE_MS = 10.0
# Honest default: every shard must answer; partial results are opt-in.
DEFAULT_MIN_COVERAGE = 1.0
# At ~1 ms of root CPU per request, 512 in flight is already half a second of
# queued work per core; beyond that, shedding beats queueing.
DEFAULT_MAX_IN_FLIGHT = 512

T = TypeVar("T")


@dataclass(frozen=True)
class ShardConfig:
    """One shard: the addresses of its replicas, in preference order."""

    replicas: tuple[str, ...]
    # Leaf shards beneath it: 1 for a leaf, more for another root (a subtree).
    leaves: int = 1


@dataclass(frozen=True)
class RootConfig:
    shards: tuple[ShardConfig, ...]
    merge_address: str
    listen: str = DEFAULT_LISTEN
    deadlines: DeadlinePolicy = field(
        default_factory=lambda: DeadlinePolicy(
            DEFAULT_DEADLINE_MS / 1000, DEFAULT_MAX_DEADLINE_MS / 1000, DEFAULT_MERGE_RESERVE_MS / 1000
        )
    )
    min_coverage: float = DEFAULT_MIN_COVERAGE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    workers: int = 1
    hedging: HedgingConfig = HedgingConfig()
    budget: HedgeBudgetConfig = HedgeBudgetConfig()
    latency_window: LatencyWindowConfig = LatencyWindowConfig()
    replicas: ReplicaConfig = ReplicaConfig()
    coverage_wait: CoverageWaitConfig = CoverageWaitConfig()
    metrics_listen: str = ""  # host:port for /metrics and the status page; "" serves none
    # In a tree, a lower root's shards are a slice of the whole: their global
    # indices start at shard_offset, out of total_shards (0: just this root's).
    shard_offset: int = 0
    total_shards: int = 0
    tls: ServerTls | None = None  # serving Root.Query; None: plaintext
    upstream_tls: ClientTls | None = None  # calling leaves and the merge; None: plaintext
    # Clients get the leaves' and the merge's own error details (addresses, exception
    # text) instead of what failed and what to do; the log has them either way.
    detailed_errors: bool = False

    @property
    def shard_count(self) -> int:
        """Shards in the whole dataset, as told to every leaf."""
        return self.total_shards or self.shard_offset + sum(s.leaves for s in self.shards)

    def leaf_spans(self) -> list[tuple[int, int]]:
        """(first global leaf shard, leaf shards) of every configured shard."""
        spans, first = [], self.shard_offset
        for shard in self.shards:
            spans.append((first, shard.leaves))
            first += shard.leaves
        return spans


class Table:
    """A TOML table being read: typed lookups, and a check that nothing else was written."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a table, got {type(data).__name__}")
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type[T] | tuple[type, ...], default: T) -> T:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML has no implicit bool->int; an int is fine where a float is wanted.
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"{self.where(key)}: expected {names}, got {value!r}")
        return value  # type: ignore[no-any-return]

    def require(self, key: str, kind: type[T]) -> T:
        if key not in self.data:
            raise ConfigError(f"{self.where(key)} is required")
        value = self.get(key, kind, None)
        assert value is not None
        return value

    def table(self, key: str) -> Table:
        self.used.add(key)
        return Table(self.data.get(key, {}), self.where(key))

    def address(self, key: str, default: str | None = None, *, listen: bool = False) -> str:
        value = self.require(key, str) if default is None else self.get(key, str, default)
        try:
            return validate(value, listen=listen)
        except AddressError as exc:
            raise ConfigError(f"{self.where(key)}: {exc}") from None

    def file(self, key: str, default: str = "") -> str:
        """A path to a readable file (TLS material); relative paths are kept as written."""
        value = self.get(key, str, default)
        if value and not Path(value).is_file():
            raise ConfigError(f"{self.where(key)}: no such file {value!r}")
        return value

    def finish(self) -> None:
        """Reject keys that were never read: almost always a typo."""
        for key in self.data:
            if key not in self.used:
                close = difflib.get_close_matches(key, sorted(self.used), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(self.used))}"
                raise ConfigError(f"unknown key {self.where(key)!r}{hint}")


def positive(path: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(f"{path} must be > 0, got {value:g}")
    return value


_MS = 0.001
# TOML key -> (dataclass field, TOML type, scale). Durations are written in ms.
_HEDGING_KEYS: dict[str, tuple[str, type | tuple[type, ...], float]] = {
    "enabled": ("enabled", bool, 1),
    "max_attempts": ("max_attempts", int, 1),
    "hedging_delay_ms": ("hedging_delay", float, _MS),
    "delay_percentile": ("delay_percentile", float, 1),
    "min_delay_ms": ("min_delay", float, _MS),
    "max_delay_ms": ("max_delay", float, _MS),
    "initial_delay_ms": ("initial_delay", float, _MS),
    "min_samples": ("min_samples", int, 1),
    "non_fatal_status_codes": ("non_fatal_status_codes", list, 1),
}
_BUDGET_KEYS: dict[str, tuple[str, type | tuple[type, ...], float]] = {
    "max_extra_load": ("max_extra_load", float, 1),
    "min_per_second": ("min_per_second", float, 1),
    "budget_ttl_ms": ("ttl", float, _MS),
    "budget_slices": ("slices", int, 1),
}
_WINDOW_KEYS: dict[str, tuple[str, type | tuple[type, ...], float]] = {
    "latency_window": ("size", int, 1),
    "latency_recompute_every": ("recompute_every", int, 1),
    "latency_max_age_ms": ("max_age", float, _MS),
    "latency_keep_newest": ("keep_newest", int, 1),
}
_COVERAGE_WAIT_KEYS: dict[str, tuple[str, type | tuple[type, ...], float]] = {
    "coverage_wait_ms": ("extra_wait", float, _MS),
    "coverage_wait_factor": ("extra_wait_factor", float, 1),
}
_REPLICA_KEYS: dict[str, tuple[str, type | tuple[type, ...], float]] = {
    "consecutive_failures": ("consecutive_failures", int, 1),
    "base_ejection_time_ms": ("base_ejection_time", float, _MS),
    "max_ejection_time_ms": ("max_ejection_time", float, _MS),
    "max_ejection_percent": ("max_ejection_percent", float, 1),
    "decay_after_successes": ("decay_after_successes", int, 1),
    "ewma_alpha": ("ewma_alpha", float, 1),
    "ewma_stale_after_ms": ("ewma_stale_after", float, _MS),
    "probe_interval_ms": ("probe_interval", float, _MS),
}


def _policy(cls: type[T], table: Table, keys: dict[str, tuple[str, type | tuple[type, ...], float]]) -> T:
    """Build a policy config from the keys of ``table`` it owns (others are left unread)."""
    kwargs: dict[str, Any] = {}
    for key, (name, kind, scale) in keys.items():
        value = table.get(key, kind, None)
        if value is not None:
            kwargs[name] = value * scale if scale != 1 else value
    if kwargs.get("consecutive_failures") == 0:
        kwargs["consecutive_failures"] = None  # 0 turns ejection off
    if kwargs.get("probe_interval") == 0:
        kwargs["probe_interval"] = None  # 0 turns probing off
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def parse_root_config(data: Mapping[str, Any]) -> RootConfig:
    """Validate a parsed TOML document into a RootConfig."""
    doc = Table(data, "")
    root = doc.table("root")
    listen = root.address("listen", DEFAULT_LISTEN, listen=True)
    default_ms = positive(
        root.where("default_deadline_ms"), root.get("default_deadline_ms", float, DEFAULT_DEADLINE_MS)
    )
    max_ms = root.get("max_deadline_ms", float, max(DEFAULT_MAX_DEADLINE_MS, default_ms))
    reserve_ms = root.get("merge_reserve_ms", float, min(DEFAULT_MERGE_RESERVE_MS, default_ms / 2))
    adaptive_reserve = root.get("adaptive_reserve", bool, True)
    deadlines = DeadlinePolicy(default_ms / 1000, max_ms / 1000, reserve_ms / 1000, adaptive_reserve)
    min_coverage = root.get("min_coverage", float, DEFAULT_MIN_COVERAGE)
    if not 0.0 <= min_coverage <= 1.0:
        raise ConfigError(f"root.min_coverage must be in [0, 1], got {min_coverage:g}")
    max_in_flight = int(positive("root.max_in_flight", root.get("max_in_flight", int, DEFAULT_MAX_IN_FLIGHT)))
    max_message_bytes = int(
        positive("root.max_message_bytes", root.get("max_message_bytes", int, DEFAULT_MAX_MESSAGE_BYTES))
    )
    grace = root.get("grace_seconds", float, DEFAULT_GRACE_SECONDS)
    if grace < 0:
        raise ConfigError(f"root.grace_seconds must be >= 0, got {grace:g}")
    workers = int(positive("root.workers", root.get("workers", int, 1)))
    coverage_wait = _policy(CoverageWaitConfig, root, _COVERAGE_WAIT_KEYS)
    if coverage_wait.extra_wait is None and 0.0 < min_coverage < 1.0 and root.get("partial_coverage_wait", bool, True):
        # Partial results are allowed: do not hold the fast shards' answer for a hung one
        # until the deadline (root/policies/coverage_wait.py, "the default").
        coverage_wait = CoverageWaitConfig(
            extra_wait=PARTIAL_COVERAGE_WAIT,
            extra_wait_factor=root.get("coverage_wait_factor", float, PARTIAL_COVERAGE_WAIT_FACTOR),
        )
    metrics_listen = root.address("metrics_listen", "", listen=True) if root.get("metrics_listen", str, "") else ""
    shard_offset = root.get("shard_offset", int, 0)
    if shard_offset < 0:
        raise ConfigError(f"root.shard_offset must be >= 0, got {shard_offset}")
    total_shards = root.get("total_shards", int, 0)
    detailed_errors = root.get("detailed_errors", bool, False)
    root.finish()

    merge = doc.table("merge")
    merge_address = merge.address("address")
    merge.finish()

    hedging_table = doc.table("hedging")
    budget = _policy(HedgeBudgetConfig, hedging_table, _BUDGET_KEYS)
    hedging = _policy(HedgingConfig, hedging_table, _HEDGING_KEYS)
    if hedging_table.get("delay_percentile", float, None) is None:
        # Designed with the budget: hedge half of what it allows (hedging.py).
        hedging = dataclasses.replace(hedging, delay_percentile=delay_percentile_for(budget.max_extra_load))
    latency_window = _policy(LatencyWindowConfig, hedging_table, _WINDOW_KEYS)
    hedging_table.finish()
    replicas_table = doc.table("replicas")
    replica_config = _policy(ReplicaConfig, replicas_table, _REPLICA_KEYS)
    replicas_table.finish()

    tls_table = doc.table("tls")
    tls = None
    if tls_table.data:
        tls_table.require("cert_file", str)
        tls_table.require("key_file", str)
        tls = ServerTls(tls_table.file("cert_file"), tls_table.file("key_file"), tls_table.file("client_ca_file"))
    tls_table.finish()
    upstream_table = doc.table("upstream_tls")
    upstream_tls = None
    if upstream_table.data:
        try:
            upstream_tls = ClientTls(
                upstream_table.file("ca_file"), upstream_table.file("cert_file"), upstream_table.file("key_file")
            )
        except ValueError as exc:
            raise ConfigError(f"upstream_{exc}") from None
    upstream_table.finish()

    doc.used.add("shards")
    raw_shards = data.get("shards")
    if not isinstance(raw_shards, list) or not raw_shards:
        raise ConfigError('shards: at least one [[shards]] table with replicas = ["host:port", ...] is required')
    shards = []
    for i, raw in enumerate(raw_shards):
        shard = Table(raw, f"shards[{i}]")
        replicas = shard.require("replicas", list)
        if not replicas:
            raise ConfigError(f"shards[{i}].replicas: at least one replica address is required")
        checked = []
        for j, address in enumerate(replicas):
            if not isinstance(address, str):
                raise ConfigError(f"shards[{i}].replicas[{j}]: expected an address string, got {address!r}")
            try:
                checked.append(validate(address))
            except AddressError as exc:
                raise ConfigError(f"shards[{i}].replicas[{j}]: {exc}") from None
        if len(set(checked)) != len(checked):
            raise ConfigError(f"shards[{i}].replicas: the same address appears twice")
        leaves = int(positive(f"shards[{i}].leaves", shard.get("leaves", int, 1)))
        shard.finish()
        shards.append(ShardConfig(tuple(checked), leaves))
    doc.finish()
    end = shard_offset + sum(s.leaves for s in shards)
    if total_shards and total_shards < end:
        raise ConfigError(f"root.total_shards ({total_shards}) is below shard_offset + shards ({end})")
    return RootConfig(
        shards=tuple(shards),
        merge_address=merge_address,
        listen=listen,
        deadlines=deadlines,
        min_coverage=min_coverage,
        max_in_flight=max_in_flight,
        max_message_bytes=max_message_bytes,
        grace_seconds=grace,
        workers=workers,
        hedging=hedging,
        budget=budget,
        latency_window=latency_window,
        replicas=replica_config,
        coverage_wait=coverage_wait,
        metrics_listen=metrics_listen,
        shard_offset=shard_offset,
        total_shards=total_shards,
        tls=tls,
        upstream_tls=upstream_tls,
        detailed_errors=detailed_errors,
    )


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file's document; a missing or malformed file is a ConfigError naming it."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_root_config(path: str | Path) -> RootConfig:
    """Read and validate a root configuration file."""
    data = read_toml(path)
    try:
        return parse_root_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
