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

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from root.deadlines import DeadlinePolicy
from root.errors import ConfigError
from scatter_common.addresses import AddressError, validate
from scatter_common.serving import DEFAULT_GRACE_SECONDS, DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_LISTEN = "127.0.0.1:50051"
# One second covers an interactive search with room for a hedge or two;
# clients that need more send their own deadline.
DEFAULT_DEADLINE_MS = 1000.0
# A client deadline above this is capped: no request may hold root resources
# for longer (Elasticsearch's search.default_search_timeout is unbounded, and
# a stuck request then holds its slot forever).
DEFAULT_MAX_DEADLINE_MS = 30_000.0
# A top-k merge of a few pages costs ~1 ms; 10 ms also covers a GC pause.
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
        return self.get(key, kind, None)  # type: ignore[arg-type]

    def table(self, key: str) -> Table:
        self.used.add(key)
        return Table(self.data.get(key, {}), self.where(key))

    def address(self, key: str, default: str | None = None, *, listen: bool = False) -> str:
        value = self.require(key, str) if default is None else self.get(key, str, default)
        try:
            return validate(value, listen=listen)
        except AddressError as exc:
            raise ConfigError(f"{self.where(key)}: {exc}") from None

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


def parse_root_config(data: Mapping[str, Any]) -> RootConfig:
    """Validate a parsed TOML document into a RootConfig."""
    doc = Table(data, "")
    root = doc.table("root")
    listen = root.address("listen", DEFAULT_LISTEN, listen=True)
    default_ms = positive(root.where("default_deadline_ms"), root.get("default_deadline_ms", float, DEFAULT_DEADLINE_MS))
    max_ms = root.get("max_deadline_ms", float, max(DEFAULT_MAX_DEADLINE_MS, default_ms))
    reserve_ms = root.get("merge_reserve_ms", float, min(DEFAULT_MERGE_RESERVE_MS, default_ms / 2))
    deadlines = DeadlinePolicy(default_ms / 1000, max_ms / 1000, reserve_ms / 1000)
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
    root.finish()

    merge = doc.table("merge")
    merge_address = merge.address("address")
    merge.finish()

    doc.used.add("shards")
    raw_shards = data.get("shards")
    if not isinstance(raw_shards, list) or not raw_shards:
        raise ConfigError("shards: at least one [[shards]] table with replicas = [\"host:port\", ...] is required")
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
        shard.finish()
        shards.append(ShardConfig(tuple(checked)))
    doc.finish()
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
    )


def load_root_config(path: str | Path) -> RootConfig:
    """Read and validate a root configuration file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_root_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
