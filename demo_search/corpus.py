"""Corpora: where documents come from. Everything here yields ``Document``s lazily.

Three sources:

* ``stdlib_corpus()``: the documentation of the Python standard library on
  this machine (docstrings read with ``ast``, plus the ``pydoc_data`` topics).
  Real text, no download, the same on every machine with the same Python.
* ``jsonl_corpus(path)`` / ``directory_corpus(path)``: the user's own text.
* the synthetic generator lives in :mod:`demo_search.synthetic` (it needs numpy
  and has its own rules).

Rules: a corpus never imports the code it reads (some stdlib modules have
side effects on import; ``pydoc_data.topics`` is the one exception, a module
holding a single dict literal). The order of documents is deterministic.
Document ids must be unique; the index builder rejects duplicates.
"""

from __future__ import annotations

import ast
import json
import os
import sysconfig
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "STDLIB_SKIP_DIRS",
    "CorpusError",
    "Document",
    "directory_corpus",
    "jsonl_corpus",
    "load_corpus",
    "stdlib_corpus",
]


class CorpusError(ValueError):
    """Malformed corpus input; the message names the file (and line)."""


@dataclass(frozen=True, slots=True)
class Document:
    """One searchable document. ``id`` is unique within its corpus."""

    id: str
    title: str
    text: str


# Directories of the stdlib tree that are not the library's documentation:
# tests, third-party packages, tools and demos, caches. pydoc_data is read
# separately (its topics are documents; its source is one huge dict literal).
STDLIB_SKIP_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "__pycache__",
        "pydoc_data",
        "__phello__",
    }
)


def _is_skipped_dir(name: str) -> bool:
    # "config-3.11-x86_64-linux-gnu" and similar hold build files, not modules;
    # only directories named like a Python package can be imported anyway.
    return name in STDLIB_SKIP_DIRS or not name.isidentifier()


def _module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    # The signature makes parameter names searchable ("skipkeys" finds
    # json.dump) and reads well at the top of a snippet.
    prefix = "async def " if isinstance(node, ast.AsyncFunctionDef) else ""
    returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
    return f"{prefix}{node.name}({ast.unparse(node.args)}){returns}"


_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _definitions(body: Iterable[ast.stmt]) -> Iterator[_Definition]:
    """Classes and functions defined directly in ``body``.

    Looks inside ``if``/``try``/``with`` blocks too, because the stdlib often
    defines platform-specific variants there (``if sys.platform == "win32":``).
    Does not look inside function bodies: nested helpers are not API.
    """
    for stmt in body:
        if isinstance(stmt, _Definition):
            yield stmt
        elif isinstance(stmt, ast.If):
            yield from _definitions(stmt.body)
            yield from _definitions(stmt.orelse)
        elif isinstance(stmt, ast.Try | ast.TryStar):
            yield from _definitions(stmt.body)
            for handler in stmt.handlers:
                yield from _definitions(handler.body)
            yield from _definitions(stmt.orelse)
            yield from _definitions(stmt.finalbody)
        elif isinstance(stmt, ast.With):
            yield from _definitions(stmt.body)


def _module_documents(tree: ast.Module, module: str) -> Iterator[Document]:
    doc = ast.get_docstring(tree)
    if doc:
        yield Document(module, module, doc)
    stack: list[tuple[str, Iterable[ast.stmt]]] = [(module, tree.body)]
    while stack:
        prefix, body = stack.pop(0)
        for node in _definitions(body):
            name = f"{prefix}.{node.name}"
            doc = ast.get_docstring(node)
            if isinstance(node, ast.ClassDef):
                if doc:
                    yield Document(name, name, doc)
                stack.append((name, node.body))
            elif doc:
                yield Document(name, name, f"{_signature(node)}\n\n{doc}")


def _parse(path: Path) -> ast.Module | None:
    try:
        source = path.read_bytes()
        # The stdlib has a few deliberately odd files (bad encodings for the
        # tokenizer tests, Python 2 syntax); they are skipped, not fatal.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for invalid escapes in old files
            return ast.parse(source, filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return None


def stdlib_corpus(stdlib_dir: str | os.PathLike[str] | None = None) -> Iterator[Document]:
    """Docstrings of the standard library plus the ``pydoc_data`` topics.

    Titles and ids are qualified names ("json.decoder.JSONDecoder.decode");
    a function's text starts with its signature. The first definition of a
    name wins (conditional definitions repeat names). Deterministic: files
    are visited in sorted order, topics last in sorted order.
    """
    root = Path(sysconfig.get_paths()["stdlib"] if stdlib_dir is None else stdlib_dir)
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _is_skipped_dir(d))
        for filename in sorted(filenames):
            stem, ext = os.path.splitext(filename)
            if ext != ".py" or not stem.isidentifier():
                continue
            path = Path(dirpath, filename)
            tree = _parse(path)
            if tree is None:
                continue
            for document in _module_documents(tree, _module_name(path.relative_to(root))):
                if document.id not in seen:
                    seen.add(document.id)
                    yield document
    # Data only: one dict literal, the text behind help("topics").
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield Document(f"topic:{name}", f"topic: {name}", topics[name])


def _require_str(record: dict[str, object], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise CorpusError(f"{where}: field {key!r} must be a string, got {got}")
    return value


def jsonl_corpus(path: str | os.PathLike[str]) -> Iterator[Document]:
    """One JSON object per line: ``{"id": str, "title": str, "text": str}``.

    Blank lines are skipped; any other malformed line raises ``CorpusError``
    naming the file and line number.
    """
    with open(path, encoding="utf-8") as lines:
        lineno = 0
        try:
            for lineno, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                where = f"{os.fspath(path)}:{lineno}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
                if not isinstance(record, dict):
                    raise CorpusError(f"{where}: expected a JSON object, got {type(record).__name__}")
                yield Document(
                    _require_str(record, "id", where),
                    _require_str(record, "title", where),
                    _require_str(record, "text", where),
                )
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{os.fspath(path)}:{lineno + 1}: not valid UTF-8 ({exc.reason})") from exc


def _title_of(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line
    return fallback


def directory_corpus(path: str | os.PathLike[str]) -> Iterator[Document]:
    """Every ``.txt`` and ``.md`` file under ``path``, in sorted order.

    The id is the path relative to ``path`` (with ``/``), the title the first
    non-empty line (a Markdown heading loses its ``#``s), the text the whole file.
    """
    root = Path(path)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            if not filename.endswith((".txt", ".md")):
                continue
            file = Path(dirpath, filename)
            relative = file.relative_to(root).as_posix()
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusError(f"{file}: not valid UTF-8 at byte {exc.start} ({exc.reason})") from exc
            yield Document(relative, _title_of(text, relative), text)


def load_corpus(spec: str, *, docs: int | None = None, seed: int = 0) -> Iterator[Document]:
    """``"stdlib"``, ``"synthetic"``, a ``.jsonl`` file or a directory.

    ``docs`` caps the number of documents (the synthetic corpus needs it: it
    defaults to 10,000 there); ``seed`` only matters for the synthetic corpus.
    """
    if spec == "synthetic":
        from demo_search.synthetic import DEFAULT_DOCS, synthetic_corpus

        return synthetic_corpus(DEFAULT_DOCS if docs is None else docs, seed=seed)
    if spec == "stdlib":
        source: Iterator[Document] = stdlib_corpus()
    else:
        path = Path(spec)
        if path.is_dir():
            source = directory_corpus(path)
        elif path.is_file():
            source = jsonl_corpus(path)
        else:
            raise CorpusError(
                f"{spec}: no such file or directory (expected 'stdlib', 'synthetic', a .jsonl file or a directory)"
            )
    return source if docs is None else _take(source, docs)


def _take(documents: Iterator[Document], n: int) -> Iterator[Document]:
    for i, document in enumerate(documents):
        if i >= n:
            return
        yield document
