"""Replica discovery: where a shard's replicas are, looked up again and again.

What lives here: ``Discovery``, one task per discovered shard that looks up
its replica set every ``[discovery] refresh_ms`` and hands a changed set to
``root.membership``. What does not: applying the set (membership), choosing
or health-checking replicas (policies, probing).

A shard's replicas come from one of (``[[shards]]`` in the root config):

- ``replicas = ["host:port", ...]``: static, as written (no task here);
- ``dns = "name:port"``: every A and AAAA record of ``name`` is a replica
  on ``port`` (a Kubernetes headless Service per shard: one record per
  ready pod); ``dns = "_service._proto.name"`` (no port): every SRV record
  is a replica at its target's addresses and its own port (the same
  Service's named port, ``_grpc._tcp.leaf-0.leaves.NS.svc``; also how
  replicas on one host with different ports are found). Asked of the system's resolvers, or of ``[discovery]
  dns_server`` when set. We use dnspython's resolver rather than
  ``getaddrinfo``: it can be pointed at any server (tests, a sidecar DNS),
  it never blocks the loop, and it says NXDOMAIN apart from a timeout;
- ``file = "path"``: one address per line (blank lines and ``#`` comments
  ignored), re-read when its content changes: a mounted ConfigMap is
  updated in place (a symlink swap), so it is read, not watched by inode.

A lookup that fails (no answer, NXDOMAIN, an unreadable file, a line that
is not an address) or finds nothing keeps the last good set: it is logged
(WARNING, naming the shard and what was kept) and counted
(``scatter_root_discovery_failures_total``), and it never empties a shard. Until the first good lookup a discovered
shard has no replica: its requests answer it UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.resolver

from root.config import DiscoveryConfig, ShardConfig
from root.membership import Membership
from root.scatter import Shard
from scatter_common.addresses import AddressError, validate

__all__ = ["Discovery", "LookupFailed", "lookup_dns", "read_address_file"]

log = logging.getLogger("scatter.root")


class LookupFailed(Exception):
    """A lookup found no usable replica set; the message says why."""


def _resolver(server: str) -> dns.asyncresolver.Resolver:
    if not server:
        return dns.asyncresolver.Resolver()
    resolver = dns.asyncresolver.Resolver(configure=False)
    host, _, port = server.rpartition(":")
    resolver.nameservers = [host.strip("[]")]
    resolver.port = int(port)
    return resolver


async def _addresses(resolver: dns.asyncresolver.Resolver, host: str, port: int, timeout: float) -> list[str]:
    """``ip:port`` for every A and AAAA record of ``host``."""
    found: list[str] = []
    problems: list[str] = []
    for kind in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, kind, lifetime=timeout, search=True)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN) as exc:
            problems.append(f"{kind}: {type(exc).__name__}")
            continue
        except dns.exception.DNSException as exc:
            raise LookupFailed(f"DNS lookup of {host} ({kind}) failed: {exc}") from None
        for record in answer:
            address = record.to_text()
            found.append(f"[{address}]:{port}" if kind == "AAAA" else f"{address}:{port}")
    if not found:
        raise LookupFailed(f"{host} has no A or AAAA records ({', '.join(problems)})")
    return found


async def lookup_dns(resolver: dns.asyncresolver.Resolver, name: str, timeout: float) -> tuple[str, ...]:
    """The replica addresses behind ``name:port`` (A/AAAA records) or ``_service._proto.name`` (SRV), sorted."""
    host, sep, port = name.rpartition(":")
    if sep and port.isdigit():
        return tuple(sorted(set(await _addresses(resolver, host, int(port), timeout))))
    try:
        answer = await resolver.resolve(name, "SRV", lifetime=timeout, search=True)
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN) as exc:
        raise LookupFailed(f"{name} has no SRV records ({type(exc).__name__})") from None
    except dns.exception.DNSException as exc:
        raise LookupFailed(f"DNS lookup of {name} (SRV) failed: {exc}") from None
    found: list[str] = []
    for record in answer:
        found += await _addresses(resolver, record.target.to_text(), record.port, timeout)
    return tuple(sorted(set(found)))


def read_address_file(path: str) -> tuple[str, ...]:
    """The addresses in ``path``, one per line, in file order."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LookupFailed(f"cannot read {path}: {exc}") from None
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            found.append(validate(entry))
        except AddressError as exc:
            raise LookupFailed(f"{path}:{number}: {exc}") from None
    if not found:
        raise LookupFailed(f"{path} lists no replica address")
    return tuple(dict.fromkeys(found))  # in file order, each once


class Discovery:
    """One lookup task per discovered shard; ``start()`` on the root's loop, ``close()`` to stop."""

    def __init__(
        self,
        shards: Sequence[Shard],
        configs: Sequence[ShardConfig],
        config: DiscoveryConfig,
        membership: Membership,
    ) -> None:
        self.shards = list(shards)
        self.configs = list(configs)
        self.config = config
        self.membership = membership
        self.resolver = _resolver(config.dns_server)
        self._tasks: dict[int, asyncio.Task[None]] = {}  # shard position -> its lookup loop

    async def lookup(self, config: ShardConfig) -> tuple[str, ...]:
        if config.dns:
            return await lookup_dns(self.resolver, config.dns, min(self.config.refresh, 5.0))
        return await asyncio.to_thread(read_address_file, config.file)

    async def refresh(self, position: int) -> bool:
        """Look the shard at ``position`` up once and apply what is found; False if the lookup failed."""
        shard, config = self.shards[position], self.configs[position]
        try:
            addresses = await self.lookup(config)
        except LookupFailed as exc:
            shard.discovery_failures += 1
            kept = ", ".join(shard.policy.chooser.addresses) or "no replica yet"
            log.warning("shard %d: %s; keeping %s", shard.index, exc, kept)
            return False
        self.membership.set_replicas(shard, addresses)
        return True

    def start(self) -> None:
        for position, config in enumerate(self.configs):
            if config.dns or config.file:
                self._start(position, first_lookup_done=True)

    def _start(self, position: int, first_lookup_done: bool) -> None:
        self._tasks[position] = asyncio.get_running_loop().create_task(self._run(position, first_lookup_done))

    async def _run(self, position: int, first_lookup_done: bool) -> None:
        if first_lookup_done:
            await asyncio.sleep(self.config.refresh)
        while True:
            await self.refresh(position)
            await asyncio.sleep(self.config.refresh)

    def reconfigure(self, position: int, config: ShardConfig) -> None:
        """The shard at ``position`` has a new source (a config reload): look there from now on."""
        task = self._tasks.pop(position, None)
        if task is not None:
            task.cancel()
        self.configs[position] = config
        if config.dns or config.file:
            self._start(position, first_lookup_done=False)

    def set_config(self, config: DiscoveryConfig) -> None:
        """New ``[discovery]`` settings (a config reload): the next lookups use them."""
        self.config = config
        self.resolver = _resolver(config.dns_server)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
