"""docs/configuration.md lists every key the root's config and the deployment file read, and no other.

The keys are not listed here by hand: a complete file of each kind (every
table, every kind of shard, TLS with real certificates) is parsed by the
real code while every table it reads is recorded (``Table.finish`` runs
once per table, after its last key is read). Each key must then appear in
its table's section of the page, in backticks, and in the tables with a
default column its row must give one; each row of those tables must name a
key that exists. A key added to ``root/config.py`` or
``scatter/runtime/spec.py`` without its line in the docs fails here.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from root import config as root_config
from root.config import parse_root_config
from scatter.runtime import parse_deployment
from tests._tls import make_ca, make_cert

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
# The root config's tables whose docs table has a "default" column.
WITH_DEFAULTS = {"root", "hedging", "replicas", "discovery"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    make_ca(folder, "ca")
    make_cert(folder, "ca", "node")
    return folder


def _recording(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Table path ("root", "shards[2]", "tree.combiner") -> the keys read from it, while patched."""
    read: dict[str, set[str]] = defaultdict(set)
    finish = root_config.Table.finish

    def record(self: root_config.Table) -> None:
        read[self.path].update(self.used)
        finish(self)

    monkeypatch.setattr(root_config.Table, "finish", record)
    return read


def _root_document(certs: Path, tmp_path: Path) -> dict[str, Any]:
    replicas = tmp_path / "replicas.txt"
    replicas.write_text("127.0.0.1:50063\n")
    pem, key, ca = str(certs / "node.pem"), str(certs / "node.key"), str(certs / "ca.pem")
    return {
        "root": {"listen": "127.0.0.1:0"},
        "merge": {"address": "127.0.0.1:50060"},
        "shards": [{"replicas": ["127.0.0.1:50061"]}, {"dns": "leaves.example:50062"}, {"file": str(replicas)}],
        "hedging": {},
        "replicas": {},
        "discovery": {},
        "tls": {"cert_file": pem, "key_file": key, "client_ca_file": ca},
        "upstream_tls": {"ca_file": ca, "cert_file": pem, "key_file": key},
    }


def _section(start: str) -> str:
    """The page's text from the heading that holds ``start`` to the next heading of its level or higher."""
    lines = DOCS.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("#") and start in line)
    level = len(lines[first]) - len(lines[first].lstrip("#"))
    end = next(
        (i for i in range(first + 1, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[first:end])


def _rows(text: str) -> Iterator[tuple[list[str], list[str]]]:
    """(the backticked names of the first cell, the cells) of every table row in ``text``."""
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            yield re.findall(r"`([^`]+)`", cells[0]), cells


def test_every_root_config_key_is_documented_with_its_default(
    monkeypatch: pytest.MonkeyPatch, certs: Path, tmp_path: Path
) -> None:
    read = _recording(monkeypatch)
    parse_root_config(_root_document(certs, tmp_path))
    tables: dict[str, set[str]] = defaultdict(set)
    for path, keys in read.items():
        tables[re.sub(r"\[\d+\]$", "", path)].update(keys)  # shards[0], shards[1]... are one table
    top = tables.pop("")
    assert top == {"root", "merge", "shards", "hedging", "replicas", "discovery", "tls", "upstream_tls"}
    overview = _section("## Root configuration")
    for table in top:
        assert f"`[{table}]`" in overview or f"`[[{table}]]`" in overview, f"[{table}] not in the list of tables"
    for table, keys in tables.items():
        text = _section(f"`[{table}]`") if table != "shards" else _section("`[[shards]]`")
        for key in keys:
            assert f"`{key}`" in text or f"`{table}.{key}`" in text, f"{table}.{key} is not documented"
        documented = set()
        for names, cells in _rows(text):
            # The TLS section has rows for two tables: tls.cert_file, upstream_tls.ca_file.
            ours = [n.removeprefix(f"{table}.") for n in names if "." not in n or n.startswith(f"{table}.")]
            documented.update(ours)
            if ours and table in WITH_DEFAULTS:
                assert len(cells) >= 3 and cells[1], f"{table}: the row of {ours} gives no default"
        if table in WITH_DEFAULTS:
            assert keys <= documented, f"{table}: keys without a row of their own: {sorted(keys - documented)}"
        assert documented <= keys, f"{table}: the docs list keys the code does not read: {sorted(documented - keys)}"


def test_every_deployment_file_key_is_documented(monkeypatch: pytest.MonkeyPatch, certs: Path) -> None:
    read = _recording(monkeypatch)
    document = {
        "root": {"listen": "127.0.0.1:0"},
        "merge": {"command": ["{python}", "merge.py"], "env": {}},
        "leaves": {"command": ["{python}", "leaf.py"], "env": {}, "shards": 2, "replicas": 1},
        "runtime": {},
        "tls": {"cert_file": "node.pem", "key_file": "node.key", "ca_file": "ca.pem", "mutual": True},
        "tree": {"groups": 2, "combiner": {"command": ["{python}", "combine.py"], "env": {}}, "root": {}},
        "deploy": {},
    }
    # Only the deployment's own tables: its root part (same table names) is the test above's.
    monkeypatch.setattr("scatter.runtime.spec.parse_root_config", lambda document: None)
    parse_deployment(document, certs)
    text = _section("## Deployment file")
    deployment_tables = {"merge", "leaves", "runtime", "tls", "tree", "tree.combiner"}
    for table in deployment_tables:
        for key in read[table] - {"combiner"}:  # tree.combiner is a table: its keys are checked
            assert f"`{table}.{key}`" in text, f"{table}.{key} is not documented"
    documented = {name for names, _ in _rows(text.split("### ")[0]) for name in names}
    known = {f"{table}.{key}" for table in deployment_tables for key in read[table]}
    assert documented <= known, f"the docs list keys the code does not read: {sorted(documented - known)}"
