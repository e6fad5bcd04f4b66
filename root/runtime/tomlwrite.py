"""Write the small TOML documents the runtime generates (the root's config).

Python reads TOML (tomllib) but does not write it; the generated documents
use only tables, arrays of tables, strings, numbers, booleans and lists, so a
few lines cover them without another dependency.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dumps(document: Mapping[str, Any]) -> str:
    """TOML text for ``document``: top-level tables and arrays of tables."""
    lines: list[str] = []
    for name, section in document.items():
        if isinstance(section, Mapping):
            lines.append(f"[{name}]")
            lines += [f"{json.dumps(k)} = {_value(v)}" for k, v in section.items()]
        elif isinstance(section, list) and all(isinstance(item, Mapping) for item in section):
            for item in section:
                lines.append(f"[[{name}]]")
                lines += [f"{json.dumps(k)} = {_value(v)}" for k, v in item.items()]
        else:
            lines.insert(0, f"{json.dumps(name)} = {_value(section)}")
        lines.append("")
    return "\n".join(lines)
