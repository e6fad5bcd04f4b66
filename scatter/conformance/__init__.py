"""The conformance kit: checks any leaf or merge, in any language, against the contract.

``scatter conformance leaf|merge ADDRESS --sample FILE`` runs the checks of
``checks`` against a live server and prints the table of ``report``; the
sample file format is described in ``sample``. The contract itself is
the comments of ``protos/scatter_gather/v1/leaf.proto`` and
``merge.proto`` (``docs/any-language.md`` is the readable guide to it);
``LEAF_CHECKS`` and ``MERGE_CHECKS`` say which duty each check enforces.
The kit imports no SDK: it speaks only the wire protocol.
"""

from scatter.conformance.checks import (
    LEAF_CHECKS,
    MERGE_CHECKS,
    Check,
    KitOptions,
    Shard,
    ShardUnknown,
    check_leaf,
    check_merge,
    learn_shard,
    run_leaf,
)
from scatter.conformance.report import CheckResult, Status, failed, table
from scatter.conformance.sample import Sample, SampleError, load_sample, parse_sample

__all__ = [
    "LEAF_CHECKS",
    "MERGE_CHECKS",
    "Check",
    "CheckResult",
    "KitOptions",
    "Sample",
    "SampleError",
    "Shard",
    "ShardUnknown",
    "Status",
    "check_leaf",
    "check_merge",
    "failed",
    "learn_shard",
    "load_sample",
    "parse_sample",
    "run_leaf",
    "table",
]
