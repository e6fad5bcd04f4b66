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
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from root import wire
from root.errors import ConfigError
from root.policies import (
    DEFAULT_MAX_IN_FLIGHT_BYTES,
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
from root.policies._validate import FieldError, check_float, check_int
from root.policies.admission import DEFAULT_MAX_IN_FLIGHT
from scatter_common.addresses import AddressError, validate
from scatter_common.serving import DEFAULT_GRACE_SECONDS, DEFAULT_MAX_MESSAGE_BYTES
from scatter_common.tls import ClientTls, ServerTls, check_certificates, check_key_pair

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
# A headless Service's records change as pods come and go; CoreDNS serves
# them with a 5 s TTL by default, so looking again every 5 s follows it.
DEFAULT_DISCOVERY_REFRESH_MS = 5000.0
# Honest default: every shard must answer; partial results are opt-in.
DEFAULT_MIN_COVERAGE = 1.0

# -- ranges: what the file may say, beyond each policy's own rules ---------------------
#
# Every number must be finite (NaN passes every comparison, so one NaN would
# silently switch a check off: a NaN max_deadline_ms removed the cap), and
# within these ceilings, each where a larger value breaks something.

# Every duration: no timer of the root, the runtime or an ejection needs more
# than a day, and near the float range they overflow (2.0 ** k in the
# ejection backoff, grpc's int64 nanosecond deadlines).
MAX_DURATION_MS = 86_400_000.0
MAX_SECONDS = MAX_DURATION_MS / 1000
# TOML's integers are 64-bit; Python's are not, and float() of a larger one overflows.
MAX_INT = 2**63 - 1
# grpc's message limits are C ints: 2**31 or more is an OverflowError at start.
MAX_MESSAGE_BYTES = 2**31 - 1
# Root processes on one port: more than any machine has cores for.
MAX_WORKERS = 1024
# ExecuteRequest.shard_index and shard_count are uint32.
MAX_SHARD_INDEX = 2**32 - 1
# The latency window is allocated whole (16 bytes a sample, per shard): 100k
# samples is 1.6 MB a shard and a hundred times the default.
MAX_LATENCY_WINDOW = 100_000
# The hedge reserve holds min_per_second x budget_ttl tokens in integer
# millionths; a million hedges a second is far beyond any root.
MAX_MIN_PER_SECOND = 1e6

T = TypeVar("T")


@dataclass(frozen=True)
class ShardConfig:
    """One shard: the addresses of its replicas, or where to discover them (root.discovery)."""

    replicas: tuple[str, ...]  # static addresses; empty when discovered
    # Leaf shards beneath it: 1 for a leaf, more for another root (a subtree).
    leaves: int = 1
    dns: str = ""  # "name:port" (A/AAAA records on port) or "_service._proto.name" (SRV), re-resolved
    file: str = ""  # a file of addresses, one per line, re-read when it changes


@dataclass(frozen=True)
class DiscoveryConfig:
    """How discovered replica sets are refreshed ([discovery])."""

    refresh: float = DEFAULT_DISCOVERY_REFRESH_MS / 1000  # seconds between lookups, and config file checks
    dns_server: str = ""  # "host:port" to ask instead of the system's resolvers


# The HTTP/JSON door ([http]; root.http_ingress). Twice the default in-flight limit: room for
# requests being read and answers being written beside the ones in flight; a connection beyond
# is refused at once, cheaper than reading a request that admission would shed.
DEFAULT_HTTP_MAX_CONNECTIONS = 256
# The whole request, head and body: a 4 MiB body (max_message_bytes' default) takes 8 s at
# 4 Mbit/s; a client slower than that is stalled or hostile (nginx: 60 s between two reads).
DEFAULT_HTTP_READ_TIMEOUT_MS = 10_000.0
# The whole answer: a client that has not taken it in 10 s no longer waits for it.
DEFAULT_HTTP_WRITE_TIMEOUT_MS = 10_000.0
MAX_HTTP_CONNECTIONS = 65_536


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP/JSON ingress ([http]): where it listens, its limits, where message types come from.

    ``types_from`` is the address whose server reflection is asked for
    types no other source has: the merge's unless the file says otherwise,
    "" for none.
    """

    listen: str
    types_from: str
    max_connections: int = DEFAULT_HTTP_MAX_CONNECTIONS
    read_timeout: float = DEFAULT_HTTP_READ_TIMEOUT_MS / 1000
    write_timeout: float = DEFAULT_HTTP_WRITE_TIMEOUT_MS / 1000
    imports: tuple[str, ...] = ()
    proto_files: tuple[str, ...] = ()
    proto_paths: tuple[str, ...] = ()
    static_dir: str = ""  # a folder whose files GET and HEAD serve (root.http_static); "" serves none


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
    max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES  # request bodies admitted at once (root.policies.admission)
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
    discovery: DiscoveryConfig = DiscoveryConfig()
    # A trace UI's address for one trace, e.g. "http://jaeger:16686/trace/{trace_id}": the status
    # page links each slow request to its trace. "" links nothing.
    trace_url: str = ""
    # Clients get the leaves' and the merge's own error details (addresses, exception
    # text) instead of what failed and what to do; the log has them either way.
    detailed_errors: bool = False
    http: HttpConfig | None = None  # the HTTP/JSON ingress; None: off
    # Several shards of a request whose first attempts go to one address share one
    # Leaf.ExecuteShards call (root.scatter); False sends one Leaf.Execute per shard.
    batch_shards: bool = True

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
    """A TOML table being read: typed lookups, and a check that nothing else was written.

    Every number read is finite and within TOML's 64-bit integers, whatever
    the key; ``number`` adds the key's own range. Errors name the key as
    written (``hedging.min_delay_ms``) and show the value as written.
    """

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
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise ConfigError(f"{self.where(key)} must be a 64-bit integer, got {value!r}")
        # TOML has no implicit bool->int; an int is fine where a float is wanted.
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"{self.where(key)}: expected {names}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self.where(key)} must be a finite number, got {value!r}")
        return value  # type: ignore[no-any-return]

    def number(
        self,
        key: str,
        kind: type[T],
        default: T,
        *,
        low: float,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> T:
        """An int or float in its range (``high`` None: none but TOML's own), in the unit written."""
        value = self.get(key, kind, default)
        try:
            if kind is int:
                check_int(self.where(key), value, low=int(low), high=None if high is None else int(high))
            else:
                check_float(
                    self.where(key),
                    value,
                    low=low,
                    high=math.inf if high is None else high,
                    low_open=low_open,
                    high_open=high_open,
                )
        except FieldError as exc:
            raise ConfigError(exc.render(number=_number, value=self.written(key, value))) from None
        return value

    def written(self, key: str, value: object) -> str:
        """``key``'s value as the file has it, or ``value`` marked as the default."""
        if key in self.data:
            return repr(self.data[key])
        return f"{_number(value) if isinstance(value, float) else repr(value)} (the default)"

    def require(self, key: str, kind: type[T]) -> T:
        if key not in self.data:
            raise ConfigError(f"{self.where(key)} is required")
        value = self.get(key, kind, None)
        assert value is not None
        return value

    def table(self, key: str) -> Table:
        self.used.add(key)
        return Table(self.data.get(key, {}), self.where(key))

    def address(self, key: str, default: str | None = None, *, listen: bool = False, unix: bool = True) -> str:
        value = self.require(key, str) if default is None else self.get(key, str, default)
        try:
            return validate(value, listen=listen, unix=unix)
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


def _number(value: float) -> str:
    """A number for a message: as many digits as it has (``:g`` shows 1.0000001 as 1), no float noise."""
    return f"{value:.12g}"


_MS = 0.001


@dataclass(frozen=True)
class Key:
    """How one TOML key becomes one field of a policy configuration."""

    field: str  # the policy dataclass's field
    kind: type | tuple[type, ...]
    scale: float = 1  # the field's unit per unit written: 0.001 for a key in ms held in seconds
    high: float | None = None  # the file's own ceiling, in the unit written (None: the policy's rule only)
    zero_is_off: bool = False  # 0 in the file is None in the field: the feature is off


def _ms(name: str, *, zero_is_off: bool = False) -> Key:
    """A duration written in milliseconds, held in seconds."""
    return Key(name, float, _MS, MAX_DURATION_MS, zero_is_off)


# TOML key -> how it is read. The policies hold every rule on their fields;
# these tables say how the file spells them, so that an error can too.
_DEADLINE_KEYS = {
    "default_deadline_ms": _ms("default"),
    "max_deadline_ms": _ms("maximum"),
    "merge_reserve_ms": _ms("merge_reserve"),
    "adaptive_reserve": Key("adaptive_reserve", bool),
}
_HEDGING_KEYS = {
    "enabled": Key("enabled", bool),
    "max_attempts": Key("max_attempts", int),
    "hedging_delay_ms": _ms("hedging_delay"),
    "delay_percentile": Key("delay_percentile", float),
    "min_delay_ms": _ms("min_delay"),
    "max_delay_ms": _ms("max_delay"),
    "initial_delay_ms": _ms("initial_delay"),
    "min_samples": Key("min_samples", int),
    "non_fatal_status_codes": Key("non_fatal_status_codes", list),
}
_BUDGET_KEYS = {
    "max_extra_load": Key("max_extra_load", float),
    "min_per_second": Key("min_per_second", float, high=MAX_MIN_PER_SECOND),
    "budget_ttl_ms": _ms("ttl"),
    "budget_slices": Key("slices", int),
}
_WINDOW_KEYS = {
    "latency_window": Key("size", int, high=MAX_LATENCY_WINDOW),
    "latency_recompute_every": Key("recompute_every", int),
    "latency_max_age_ms": _ms("max_age"),
    "latency_keep_newest": Key("keep_newest", int),
}
_COVERAGE_WAIT_KEYS = {
    "coverage_wait_ms": _ms("extra_wait"),
    "coverage_wait_factor": Key("extra_wait_factor", float),
}
_REPLICA_KEYS = {
    "consecutive_failures": Key("consecutive_failures", int, zero_is_off=True),
    "base_ejection_time_ms": _ms("base_ejection_time"),
    "max_ejection_time_ms": _ms("max_ejection_time"),
    "max_ejection_percent": Key("max_ejection_percent", float),
    "decay_after_successes": Key("decay_after_successes", int),
    "ewma_alpha": Key("ewma_alpha", float),
    "ewma_stale_after_ms": _ms("ewma_stale_after"),
    "probe_interval_ms": _ms("probe_interval", zero_is_off=True),
}


def _key_named(name: str, keys: Mapping[str, Key]) -> str | None:
    """The TOML key of the field a policy's error names ("hedging.min_delay" -> "min_delay_ms").

    A policy names a field by its section and the key without its unit, or by
    its field name; tests/unit/test_config.py checks that every key is found.
    """
    last = name.rpartition(".")[2]
    for key, spec in keys.items():
        if last in (spec.field, key.removesuffix("_ms")):
            return key
    return None


def _as_written(exc: FieldError, table: Table, keys: Mapping[str, Key]) -> str:
    """A policy's error said again with the file's key names, units and values."""
    key = _key_named(exc.name, keys)
    if key is None:
        return str(exc)
    spec = keys[key]

    def rename(name: str) -> str:
        found = _key_named(name, keys)
        return table.where(found) if found is not None else name

    value = exc.value / spec.scale if isinstance(exc.value, float) and spec.scale != 1 else exc.value
    message = exc.render(rename, per_unit=1 / spec.scale, number=_number, value=table.written(key, value))
    return f"{message} (0 turns it off)" if spec.zero_is_off else message


def _policy(cls: type[T], table: Table, keys: Mapping[str, Key], defaults: Mapping[str, Any] | None = None) -> T:
    """Build a policy config from the keys of ``table`` it owns (others are left unread).

    ``defaults``: field values (in the field's unit) for keys not written,
    where the file's default differs from the dataclass's.
    """
    kwargs: dict[str, Any] = dict(defaults or {})
    for key, spec in keys.items():
        value = table.get(key, spec.kind, None)
        if value is None:
            continue
        if spec.high is not None and value > spec.high:
            raise ConfigError(f"{table.where(key)} must be <= {_number(spec.high)}, got {table.written(key, value)}")
        if spec.zero_is_off and value == 0:
            kwargs[spec.field] = None
        else:
            kwargs[spec.field] = value * spec.scale if spec.scale != 1 else value
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise ConfigError(_as_written(exc, table, keys)) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


# A discovered replica's address can be any "name:port" (a DNS name is at most 253 bytes): the
# size limits assume the longest, since a report of that shard may name it.
LONGEST_DISCOVERED_ADDRESS = 253 + len(":65535")


def payload_limit(config: RootConfig) -> int:
    """The largest payload field the root's own channels can carry (root.wire, "sizes").

    ``max_message_bytes`` less the most the root adds around a payload in an
    ExecuteRequest or in the MergeRequest, for these shards and addresses.
    """
    spans = config.leaf_spans()
    framing = max(
        wire.EXECUTE_FRAMING_BYTES,
        wire.merge_framing_bytes(
            [
                (first, "x" * LONGEST_DISCOVERED_ADDRESS if shard.dns or shard.file else max(shard.replicas, key=len))
                for (first, _), shard in zip(spans, config.shards, strict=True)
            ],
            (i for first, count in spans for i in range(first, first + count)),
            config.shard_count,
        ),
    )
    return config.max_message_bytes - framing


def parse_root_config(data: Mapping[str, Any]) -> RootConfig:
    """Validate a parsed TOML document into a RootConfig."""
    doc = Table(data, "")
    root = doc.table("root")
    listen = root.address("listen", DEFAULT_LISTEN, listen=True)
    # A default that follows another key is computed from that key as written;
    # the policy then checks them all, and its errors are said as written.
    default_ms = root.get("default_deadline_ms", float, DEFAULT_DEADLINE_MS)
    deadlines = _policy(
        DeadlinePolicy,
        root,
        _DEADLINE_KEYS,
        {
            "default": DEFAULT_DEADLINE_MS * _MS,
            "maximum": max(DEFAULT_MAX_DEADLINE_MS, default_ms) * _MS,
            "merge_reserve": min(DEFAULT_MERGE_RESERVE_MS, default_ms / 2) * _MS,
        },
    )
    trace_url = root.get("trace_url", str, "")
    if trace_url and ("{trace_id}" not in trace_url or not trace_url.startswith(("http://", "https://"))):
        raise ConfigError(
            f"root.trace_url must be an http(s) address with {{trace_id}} in it, e.g."
            f' "http://jaeger:16686/trace/{{trace_id}}"; got {trace_url!r}'
        )
    min_coverage = root.number("min_coverage", float, DEFAULT_MIN_COVERAGE, low=0.0, high=1.0)
    max_in_flight = root.number("max_in_flight", int, DEFAULT_MAX_IN_FLIGHT, low=1)
    max_message_bytes = root.number("max_message_bytes", int, DEFAULT_MAX_MESSAGE_BYTES, low=1, high=MAX_MESSAGE_BYTES)
    # The byte cap of admission (root/policies/admission.py: derived from a memory budget). It must
    # hold the largest message the root accepts, or such a request would only ever pass alone.
    max_in_flight_bytes = root.number(
        "max_in_flight_bytes", int, max(DEFAULT_MAX_IN_FLIGHT_BYTES, max_message_bytes), low=1, high=2**62
    )
    if max_in_flight_bytes < max_message_bytes:
        raise ConfigError(
            f"root.max_in_flight_bytes ({max_in_flight_bytes}) must be >= root.max_message_bytes "
            f"({max_message_bytes}): the root must be able to admit its largest request beside others"
        )
    grace = root.number("grace_seconds", float, DEFAULT_GRACE_SECONDS, low=0.0, high=MAX_SECONDS)
    workers = root.number("workers", int, 1, low=1, high=MAX_WORKERS)
    partial_coverage_wait = root.get("partial_coverage_wait", bool, True)
    coverage_defaults: dict[str, float] = {}
    if "coverage_wait_ms" not in root.data and 0.0 < min_coverage < 1.0 and partial_coverage_wait:
        # Partial results are allowed: do not hold the fast shards' answer for a hung one
        # until the deadline (root/policies/coverage_wait.py, "the default").
        coverage_defaults = {"extra_wait": PARTIAL_COVERAGE_WAIT, "extra_wait_factor": PARTIAL_COVERAGE_WAIT_FACTOR}
    coverage_wait = _policy(CoverageWaitConfig, root, _COVERAGE_WAIT_KEYS, coverage_defaults)
    metrics_listen = (
        root.address("metrics_listen", "", listen=True, unix=False) if root.get("metrics_listen", str, "") else ""
    )
    shard_offset = root.number("shard_offset", int, 0, low=0, high=MAX_SHARD_INDEX)
    total_shards = root.number("total_shards", int, 0, low=0, high=MAX_SHARD_INDEX)
    detailed_errors = root.get("detailed_errors", bool, False)
    batch_shards = root.get("batch_shards", bool, True)
    root.finish()

    merge = doc.table("merge")
    merge_address = merge.address("address")
    merge.finish()

    hedging_table = doc.table("hedging")
    budget = _policy(HedgeBudgetConfig, hedging_table, _BUDGET_KEYS)
    # Designed with the budget: hedge half of what it allows (hedging.py).
    percentile = {"delay_percentile": delay_percentile_for(budget.max_extra_load)}
    hedging = _policy(HedgingConfig, hedging_table, _HEDGING_KEYS, percentile)
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
        _check_pem(tls_table, "cert_file", "key_file", "client_ca_file")
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
        _check_pem(upstream_table, "cert_file", "key_file", "ca_file")
    upstream_table.finish()

    discovery_table = doc.table("discovery")
    refresh_ms = discovery_table.number("refresh_ms", float, DEFAULT_DISCOVERY_REFRESH_MS, low=10.0, high=3_600_000.0)
    dns_server = discovery_table.get("dns_server", str, "")
    if dns_server:
        host, sep, port = dns_server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f'discovery.dns_server: expected "host:port", got {dns_server!r}')
    discovery_table.finish()
    discovery = DiscoveryConfig(refresh_ms / 1000, dns_server)

    http = _http_config(doc.table("http"), merge_address) if "http" in data else None

    doc.used.add("shards")
    raw_shards = data.get("shards")
    if not isinstance(raw_shards, list) or not raw_shards:
        raise ConfigError('shards: at least one [[shards]] table with replicas = ["host:port", ...] is required')
    shards = []
    for i, raw in enumerate(raw_shards):
        shard = Table(raw, f"shards[{i}]")
        sources = [key for key in ("replicas", "dns", "file") if isinstance(raw, dict) and key in raw]
        if len(sources) > 1:
            raise ConfigError(
                f'shards[{i}]: give one of replicas = [...], dns = "name:port" or file = "path"'
                f" (got {', '.join(sources)})"
            )
        if sources and sources[0] != "replicas":
            leaves = shard.number("leaves", int, 1, low=1, high=MAX_SHARD_INDEX)
            if sources[0] == "dns":
                name = shard.require("dns", str)
                host, sep, port = name.rpartition(":")
                srv = not sep and name.startswith("_") and "." in name
                if not srv and (not sep or not host or not port.isdigit() or not 0 < int(port) < 65536):
                    raise ConfigError(
                        f'shards[{i}].dns: expected "name:port" (A/AAAA records) or'
                        f' "_service._proto.name" (SRV records), got {name!r}'
                    )
                shard.finish()
                shards.append(ShardConfig((), leaves, dns=name))
            else:
                path = shard.require("file", str)
                if not path:
                    raise ConfigError(f"shards[{i}].file: expected a file of replica addresses")
                shard.finish()
                shards.append(ShardConfig((), leaves, file=path))
            continue
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
        leaves = shard.number("leaves", int, 1, low=1, high=MAX_SHARD_INDEX)
        shard.finish()
        shards.append(ShardConfig(tuple(checked), leaves))
    doc.finish()
    end = shard_offset + sum(s.leaves for s in shards)
    if total_shards and total_shards < end:
        raise ConfigError(f"root.total_shards ({total_shards}) is below shard_offset + shards ({end})")
    if end > MAX_SHARD_INDEX:
        raise ConfigError(
            f"root.shard_offset + shards ({end}) is over {MAX_SHARD_INDEX}, the most a shard index can be"
        )
    config = RootConfig(
        shards=tuple(shards),
        merge_address=merge_address,
        listen=listen,
        deadlines=deadlines,
        min_coverage=min_coverage,
        max_in_flight=max_in_flight,
        max_in_flight_bytes=max_in_flight_bytes,
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
        discovery=discovery,
        trace_url=trace_url,
        detailed_errors=detailed_errors,
        http=http,
        batch_shards=batch_shards,
    )
    if payload_limit(config) < 1:
        framing = max_message_bytes - payload_limit(config)
        raise ConfigError(
            f"root.max_message_bytes = {max_message_bytes} leaves no room for a payload: the leaf and merge "
            f"requests of these {len(shards)} shards add up to {framing} bytes around it; "
            f"write at least {framing + 1} (the leaves' and the merge's limits too)"
        )
    return config


def _strings(table: Table, key: str) -> tuple[str, ...]:
    values = table.get(key, list, [])
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{table.where(key)}[{i}]: expected a non-empty string, got {value!r}")
    return tuple(values)


def _http_config(table: Table, merge_address: str) -> HttpConfig:
    """[http], when the file has it (else the ingress is off); ``listen`` is required in it."""
    listen = table.address("listen", None, listen=True)
    if listen.startswith("unix:"):
        raise ConfigError(f'{table.where("listen")}: expected "host:port" (HTTP listens on TCP), got {listen!r}')
    max_connections = table.number(
        "max_connections", int, DEFAULT_HTTP_MAX_CONNECTIONS, low=1, high=MAX_HTTP_CONNECTIONS
    )
    read_ms, write_ms = (
        table.number(key, float, default, low=0.0, low_open=True, high=MAX_DURATION_MS)
        for key, default in (
            ("read_timeout_ms", DEFAULT_HTTP_READ_TIMEOUT_MS),
            ("write_timeout_ms", DEFAULT_HTTP_WRITE_TIMEOUT_MS),
        )
    )
    types_from = table.get("types_from", str, merge_address)
    if types_from:
        try:
            types_from = validate(types_from)
        except AddressError as exc:
            raise ConfigError(f'{table.where("types_from")}: {exc} ("" asks no server reflection)') from None
    proto_files = _strings(table, "proto_files")
    for i, path in enumerate(proto_files):
        if not Path(path).is_file():
            raise ConfigError(f"{table.where('proto_files')}[{i}]: no such .proto file {path!r}")
    proto_paths = _strings(table, "proto_paths")
    for i, path in enumerate(proto_paths):
        if not Path(path).is_dir():
            raise ConfigError(f"{table.where('proto_paths')}[{i}]: no such folder {path!r}")
    imports = _strings(table, "imports")
    static_dir = table.get("static_dir", str, "")
    if static_dir and not Path(static_dir).is_dir():
        raise ConfigError(f'{table.where("static_dir")}: no such folder {static_dir!r} ("" serves no files)')
    table.finish()
    return HttpConfig(
        listen=listen,
        types_from=types_from,
        max_connections=max_connections,
        read_timeout=read_ms / 1000,
        write_timeout=write_ms / 1000,
        imports=imports,
        proto_files=proto_files,
        proto_paths=proto_paths,
        static_dir=static_dir,
    )


def _check_pem(table: Table, cert_key: str, key_key: str, ca_key: str) -> None:
    """The TLS files of ``table`` parse as what they must be: refused now, not on every call."""
    cert, key, ca = (str(table.data.get(k, "")) for k in (cert_key, key_key, ca_key))
    try:
        if cert:
            check_certificates(cert)
    except ValueError as exc:
        raise ConfigError(f"{table.where(cert_key)}: {exc}") from None
    try:
        if cert and key:
            check_key_pair(cert, key)
    except ValueError as exc:
        raise ConfigError(f"{table.where(key_key)}: {exc}") from None
    try:
        if ca:
            check_certificates(ca)
    except ValueError as exc:
        raise ConfigError(f"{table.where(ca_key)}: {exc}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file's document; a file that cannot be read or parsed is a ConfigError naming it."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a configuration") from None


def load_root_config(path: str | Path) -> RootConfig:
    """Read and validate a root configuration file."""
    data = read_toml(path)
    try:
        return parse_root_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
