"""The committed generated code is exactly what `python -m protos.generate` makes."""

from __future__ import annotations

from pathlib import Path

from protos.generate import PROTO_ROOT, generate


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert written, "no .proto files found"
    stale = []
    for path in written:
        committed = PROTO_ROOT / path.relative_to(tmp_path)
        if not committed.exists() or committed.read_text() != path.read_text():
            stale.append(str(committed.relative_to(PROTO_ROOT.parent)))
    extra = [
        str(p.relative_to(PROTO_ROOT.parent))
        for p in PROTO_ROOT.rglob("*_pb2*.py*")
        if not (tmp_path / p.relative_to(PROTO_ROOT)).exists()
    ]
    packages = [
        str(p.relative_to(PROTO_ROOT.parent))
        for p in tmp_path.rglob("__init__.py")
        if not (PROTO_ROOT / p.relative_to(tmp_path)).exists()
    ]
    assert not packages, f"folders without __init__.py (not importable as protos.PKG): {packages}"
    assert not stale and not extra, (
        f"generated code is stale: {stale}; without a .proto: {extra}. Run: python -m protos.generate"
    )
