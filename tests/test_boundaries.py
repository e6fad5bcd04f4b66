"""The import contract between the packages (docs/design.md, "Where things live").

Read from the source with ``ast``, so a violation fails here before anyone
runs the code. Direction, lowest first:

    protos                 contracts and generated code; imports nothing of ours
    scatter_common         what every process shares; imports protos only
    sdk_core               the SDKs' shared core; scatter_common, protos
    leaf_sdk, merge_sdk    the SDKs' public faces; sdk_core, scatter_common, protos
    root                   the server; scatter_common, protos (never an SDK, the
                           demo, the benchmarks or the command)
    root.policies          pure: no grpc, no asyncio, no threads, no clock
    scatter                the command; anything above but loadtest and tests
    demo_search            the demo; the SDKs, protos, scatter_common and the
                           runtime's public face (``scatter.runtime``)
    loadtest               the benchmarks; public faces only

Nothing imports ``loadtest`` or ``tests``. "Public face" means the package
itself (``from scatter.runtime import Deployment``), never one of its
modules (``scatter.runtime.supervisor``). There is no exceptions list: a new
edge is a design change, made here on purpose.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

OURS = {"protos", "scatter_common", "sdk_core", "leaf_sdk", "merge_sdk", "root", "scatter", "demo_search", "loadtest"}

# package -> the packages of ours it may import (its own subpackages always allowed).
ALLOWED: dict[str, set[str]] = {
    "protos": set(),
    "scatter_common": {"protos"},
    "sdk_core": {"protos", "scatter_common"},
    "leaf_sdk": {"protos", "scatter_common", "sdk_core"},
    "merge_sdk": {"protos", "scatter_common", "sdk_core"},
    "root": {"protos", "scatter_common"},
    "scatter": {"protos", "scatter_common", "root", "sdk_core", "leaf_sdk", "merge_sdk", "demo_search"},
    "demo_search": {"protos", "scatter_common", "leaf_sdk", "merge_sdk", "scatter"},
    "loadtest": {"protos", "scatter_common", "root", "scatter", "demo_search", "leaf_sdk", "merge_sdk"},
}

# A package of ours imports these through the package itself, never through
# one of its modules, unless it is that package.
PUBLIC_FACES = {"scatter.runtime", "sdk_core", "leaf_sdk", "merge_sdk", "root", "root.policies"}

# The applications reach the framework as a user would: public faces, and the
# public modules (no leading underscore) of protos and scatter_common.
APPLICATIONS = {"demo_search", "loadtest"}
MODULE_FACES = {"protos", "scatter_common"}

POLICY_FORBIDDEN = {"grpc", "asyncio", "anyio", "threading", "concurrent", "time", "uvloop", "socket"}


def _python_files(package: str) -> Iterator[Path]:
    yield from sorted(p for p in (REPO / package).rglob("*.py") if "_pb2" not in p.name)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every import in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    module_parts = list(path.relative_to(REPO).with_suffix("").parts)
    if module_parts[-1] == "__init__":
        module_parts.pop()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_parts[: len(module_parts) - node.level + (1 if path.name == "__init__.py" else 0)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield node.lineno, name
            # ``from scatter import runtime`` imports the submodule scatter.runtime
            for alias in node.names:
                yield node.lineno, f"{name}.{alias.name}"


def _ours(name: str) -> str | None:
    top = name.split(".")[0]
    return top if top in OURS else None


def _face_of(name: str) -> str | None:
    """The public face ``name`` reaches inside, if it does."""
    for face in sorted(PUBLIC_FACES, key=len, reverse=True):
        if name.startswith(face + "."):
            return face
    return None


def _is_public(name: str) -> bool:
    """Whether an application may import ``name``."""
    top, *rest = name.split(".")
    if top in MODULE_FACES:
        return not any(part.startswith("_") for part in rest)
    return name in PUBLIC_FACES or name == top


def _is_real_module(name: str) -> bool:
    """Whether ``name`` is a module or package of the tree (not a name imported from one)."""
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _violations(package: str) -> list[str]:
    found = []
    for path in _python_files(package):
        where = path.relative_to(REPO)
        for line, name in _imports(path):
            target = _ours(name)
            if target is None or target == package or not _is_real_module(name):
                continue
            if target not in ALLOWED[package]:
                found.append(f"{where}:{line}: {package} must not import {name}")
            elif package in APPLICATIONS and not _is_public(name):
                found.append(f"{where}:{line}: {name} is not a public face")
            elif (face := _face_of(name)) and face != "root" and not package.startswith(face.split(".")[0]):
                found.append(f"{where}:{line}: import {face} (its public face), not {name}")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_follow_the_direction(package: str) -> None:
    assert (REPO / package).is_dir()
    assert _violations(package) == []


def test_policies_do_no_io() -> None:
    """No module of root.policies imports I/O, a loop, threads or the system clock."""
    modules = list(_python_files("root/policies"))
    assert len(modules) >= 10
    for path in modules:
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path.name} needs a header docstring"
        for line, name in _imports(path):
            assert name.split(".")[0] not in POLICY_FORBIDDEN, f"{path.name}:{line} imports {name}"


def test_every_package_is_in_the_contract() -> None:
    """A new top-level package must be placed in the direction above."""
    packages = {p.name for p in REPO.iterdir() if (p / "__init__.py").exists()}
    assert packages == OURS, f"packages not in the contract: {sorted(packages ^ OURS)}"


def test_tests_share_code_through_support_modules() -> None:
    """A test module imports helpers from ``tests/_*.py``, never from another test module
    (running one file alone must not depend on how another is written)."""
    found = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for line, name in _imports(path):
            parts = name.split(".")
            if parts[0] == "tests" and any(part.startswith("test_") for part in parts[1:]):
                found.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
    assert found == []


def test_the_check_finds_a_violation() -> None:
    """The checker itself can fail: an import against the direction is found."""
    probe = REPO / "scatter_common" / "_boundary_probe.py"
    probe.write_text('"""probe"""\nfrom root import errors\nimport loadtest.tally\n')
    try:
        found = _violations("scatter_common")
    finally:
        probe.unlink()
    assert len(found) == 3, found  # root, root.errors, loadtest.tally
    probe = REPO / "demo_search" / "_boundary_probe.py"
    probe.write_text(
        '"""probe"""\nfrom scatter.runtime.supervisor import Deployment\nfrom sdk_core.calls import CallStats\n'
    )
    try:
        found = _violations("demo_search")
    finally:
        probe.unlink()
    assert len(found) == 2, found
