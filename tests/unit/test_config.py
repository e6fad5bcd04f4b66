"""Configuration validation: every bad value is refused with a message that names the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w

from root.config import load_root_config, parse_root_config
from root.errors import ConfigError
from scatter.runtime import load_deployment


def _doc(**root: Any) -> dict[str, Any]:
    return {
        "root": root,
        "merge": {"address": "127.0.0.1:7000"},
        "shards": [{"replicas": ["127.0.0.1:7001", "127.0.0.1:7002"]}, {"replicas": ["unix:/tmp/leaf.sock"]}],
    }


def test_defaults() -> None:
    config = parse_root_config(_doc())
    assert len(config.shards) == 2
    assert config.shards[1].replicas == ("unix:/tmp/leaf.sock",)
    assert config.deadlines.default == 1.0
    assert config.min_coverage == 1.0


def test_partial_coverage_gets_a_coverage_wait_by_default() -> None:
    from root.policies import CoverageWaitConfig

    assert parse_root_config(_doc()).coverage_wait == CoverageWaitConfig()  # every shard: no wait
    assert parse_root_config(_doc(min_coverage=0.0)).coverage_wait == CoverageWaitConfig()  # a lower root
    assert parse_root_config(_doc(min_coverage=0.5)).coverage_wait == CoverageWaitConfig(0.020, 2.0)
    assert parse_root_config(_doc(min_coverage=0.5, coverage_wait_factor=0.5)).coverage_wait == CoverageWaitConfig(
        0.020, 0.5
    )
    assert parse_root_config(_doc(min_coverage=0.5, coverage_wait_ms=5)).coverage_wait == CoverageWaitConfig(0.005)
    off = parse_root_config(_doc(min_coverage=0.5, partial_coverage_wait=False))
    assert off.coverage_wait == CoverageWaitConfig()
    assert parse_root_config(_doc()).deadlines.adaptive_reserve
    assert not parse_root_config(_doc(adaptive_reserve=False)).deadlines.adaptive_reserve


def test_discovered_shards() -> None:
    doc = _doc()
    doc["shards"] = [{"dns": "leaf-0.leaves.svc:50051"}, {"file": "/etc/scatter/shard-1"}, {"replicas": ["a:1"]}]
    doc["discovery"] = {"refresh_ms": 200, "dns_server": "127.0.0.1:5353"}
    config = parse_root_config(doc)
    assert [(s.replicas, s.dns, s.file) for s in config.shards] == [
        ((), "leaf-0.leaves.svc:50051", ""),
        ((), "", "/etc/scatter/shard-1"),
        (("a:1",), "", ""),
    ]
    assert (config.discovery.refresh, config.discovery.dns_server) == (0.2, "127.0.0.1:5353")
    for shards, message in [
        ([{"dns": "leaf-0"}], r'shards\[0\].dns: expected "name:port"'),
        ([{"dns": "a:1", "replicas": ["b:1"]}], r"shards\[0\]: give one of .*got replicas, dns"),
        ([{"file": ""}], r"shards\[0\].file: expected a file"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_root_config({**_doc(), "shards": shards})
    with pytest.raises(ConfigError, match=r"discovery.refresh_ms must be in \[10, 3600000\], got 1"):
        parse_root_config({**_doc(), "discovery": {"refresh_ms": 1}})


def test_values_are_read_in_ms() -> None:
    config = parse_root_config(
        _doc(default_deadline_ms=250, max_deadline_ms=2000, merge_reserve_ms=5, min_coverage=0.5)
    )
    assert (config.deadlines.default, config.deadlines.maximum, config.deadlines.merge_reserve) == (
        0.25,
        2.0,
        0.005,
    )
    assert config.min_coverage == 0.5


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_doc(min_coverag=1.0), r"unknown key 'root.min_coverag'; did you mean 'min_coverage'\?"),
        (_doc(min_coverage=1.5), r"root.min_coverage must be in \[0, 1\], got 1.5"),
        (_doc(min_coverage="all"), r"root.min_coverage: expected float, got 'all'"),
        (_doc(default_deadline_ms=0), r"root.default_deadline_ms must be > 0"),
        (_doc(max_in_flight=0), r"root.max_in_flight must be > 0"),
        (_doc(max_in_flight=True), r"root.max_in_flight: expected int, got True"),
        (_doc(listen="localhost"), r"root.listen: 'localhost': expected 'host:port'"),
        (
            _doc(default_deadline_ms=100, max_deadline_ms=50),
            r"max_deadline_ms \(50\) must be >= default_deadline_ms",
        ),
        ({**_doc(), "merge": {}}, r"merge.address is required"),
        ({**_doc(), "shards": []}, r"at least one \[\[shards\]\]"),
        ({**_doc(), "shards": [{"replicas": []}]}, r"shards\[0\].replicas: at least one replica"),
        (
            {**_doc(), "shards": [{"replicas": ["127.0.0.1:1", "127.0.0.1:1"]}]},
            r"the same address appears twice",
        ),
        (
            {**_doc(), "shards": [{"replicas": ["127.0.0.1:99999"]}]},
            r"shards\[0\].replicas\[0\]: .*port must be in 1..65535",
        ),
        ({**_doc(), "shards": [{"replica": ["127.0.0.1:1"]}]}, r"shards\[0\].replicas is required"),
        ({**_doc(), "sharsd": 1}, r"unknown key 'sharsd'; did you mean 'shards'\?"),
    ],
)
def test_bad_config_names_the_field(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_root_config(doc)


def test_load_reports_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_root_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[root\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_root_config(bad)


def test_written_toml_reads_back(tmp_path: Path) -> None:
    doc = _doc(min_coverage=0.5, listen="127.0.0.1:0")
    path = tmp_path / "root.toml"
    path.write_text(tomli_w.dumps(doc))
    assert load_root_config(path) == parse_root_config(doc)


def test_deployment_file(tmp_path: Path) -> None:
    path = tmp_path / "scatter.toml"
    path.write_text(
        '[root]\nmin_coverage = 0.5\n[merge]\ncommand = ["{python}", "m.py"]\n'
        '[leaves]\ncommand = ["{python}", "l.py"]\nshards = 3\nreplicas = 2\nenv = { A = "1" }\n'
    )
    spec = load_deployment(path)
    assert (spec.shards, spec.replicas, spec.leaves.env, spec.directory) == (3, 2, {"A": "1"}, tmp_path)
    path.write_text('[merge]\ncommand = ["m"]\n[leaves]\ncommand = ["l"]\nshard = 3\n')
    with pytest.raises(ConfigError, match=r"unknown key 'leaves.shard'; did you mean 'shards'\?"):
        load_deployment(path)
    path.write_text('[merge]\ncommand = ["m"]\n[leaves]\ncommand = ["l"]\n[root]\nmin_coverage = 2\n')
    with pytest.raises(ConfigError, match=r"root.min_coverage must be in \[0, 1\]"):
        load_deployment(path)
