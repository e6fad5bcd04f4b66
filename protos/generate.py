"""Regenerate the Python code for every .proto under protos/.

Run from anywhere: ``python -m protos.generate`` (needs the ``dev`` extra:
grpcio-tools and mypy-protobuf, at the versions pinned in pyproject.toml so
the output is byte-stable). ``tests/test_protos_fresh.py`` runs the same code
into a temporary folder and fails when the committed files differ.

protoc names Python modules after the proto path (``scatter_gather.v1``) but
our code ships them inside the ``protos`` package, so the imports protoc
writes are rewritten to ``protos.<path>``. That keeps the .proto files clean
for other languages (``import "scatter_gather/v1/shard.proto"``).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    """Every .proto under ``root``, sorted for a stable build."""
    return sorted(root.rglob("*.proto"))


def _our_packages(root: Path) -> list[str]:
    """Top-level proto packages (folder names) that live under protos/."""
    return sorted({p.relative_to(root).parts[0] for p in proto_files(root)})


def _rewrite_imports(text: str, packages: list[str]) -> str:
    names = "|".join(re.escape(p) for p in packages)
    text = re.sub(rf"^from ({names})([.\w]*) import ", r"from protos.\1\2 import ", text, flags=re.M)
    text = re.sub(rf"^import ({names})\.", r"import protos.\1.", text, flags=re.M)
    # mypy-protobuf stubs refer to sibling modules by their full dotted path.
    return re.sub(rf"(?<![\w.])({names})(\.v\d+\.\w+_pb2)\b", r"protos.\1\2", text)


def generate(out_dir: Path, root: Path = PROTO_ROOT) -> list[Path]:
    """Compile every proto under ``root`` into ``out_dir``; return the files written."""
    import grpc_tools
    from grpc_tools import protoc  # dev dependency: imported only when generating

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    protos = [str(p.relative_to(root)) for p in proto_files(root)]
    args = [
        "protoc",
        f"-I{root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    packages = _our_packages(root)
    written = []
    for path in sorted(out_dir.rglob("*")):
        if path.name.endswith(GENERATED_SUFFIXES):
            path.write_text(_rewrite_imports(path.read_text(), packages))
            written.append(path)
    # Every generated folder is a regular package so `protos.x.v1` imports.
    for folder in sorted({p.parent for p in written}):
        while folder != out_dir and folder.is_relative_to(out_dir):
            init = folder / "__init__.py"
            if not init.exists():
                init.write_text("")
            folder = folder.parent
    return written


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        for path in sorted(out.rglob("*.py*")):
            target = PROTO_ROOT / path.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
            print(f"wrote {target.relative_to(PROTO_ROOT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
