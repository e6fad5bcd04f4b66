"""YAML out: documents in the order built, keys in the order written, comments between.

Deterministic on purpose (``tests/unit/test_export.py`` compares the committed
``deploy/k8s/`` with a fresh export byte for byte): no sorting that would
scatter ``apiVersion`` and ``kind`` through a document, no timestamps, and
multi-line strings (the root's TOML) as literal blocks a person can read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # no &id001 anchors: every document reads on its own


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def comment(text: str) -> str:
    """``text`` as YAML comment lines."""
    return "".join(f"# {line}".rstrip() + "\n" for line in text.strip("\n").splitlines())


def document(doc: Any, note: str = "") -> str:
    """One YAML document, with ``note`` as a comment above it."""
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)
    return (comment(note) if note else "") + body


def stream(docs: Sequence[tuple[str, Any]], header: str = "") -> str:
    """Documents separated by ``---``, each with its note; ``header`` opens the file."""
    parts = [document(doc, note) for note, doc in docs]
    return (comment(header) + "\n" if header else "") + "---\n".join(parts)
