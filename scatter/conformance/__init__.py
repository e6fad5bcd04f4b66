"""The conformance kit: checks any leaf or merge, in any language, against the contract.

``scatter conformance leaf|merge ADDRESS --sample FILE`` runs the checks of
``checks`` against a live server and prints the table of ``report``; the
sample file format is described in ``sample``. The contract itself is
``docs/any-language.md``. Like the rest of ``root``, this package imports
no SDK: it speaks only the wire protocol.
"""

from scatter.conformance.checks import KitOptions, check_leaf, check_merge
from scatter.conformance.report import CheckResult, Status, failed, table
from scatter.conformance.sample import Sample, SampleError, load_sample, parse_sample

__all__ = [
    "CheckResult",
    "KitOptions",
    "Sample",
    "SampleError",
    "Status",
    "check_leaf",
    "check_merge",
    "failed",
    "load_sample",
    "parse_sample",
    "table",
]
