"""Inspecting the user's functions once, at construction, never per call.

What lives here: deciding whether a handler or hook is async, reading the
message types from its annotations (or checking the ones given instead,
with one wording for "cannot infer"), and turning a user's sync-or-async hook
into the coroutine hook ``serve_until_signal`` expects.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from google.protobuf.message import Message

from scatter_common.serving import Hook

Info = TypeVar("Info")

# A lifecycle hook as users write it: sync or async, given a small info object.
UserHook = Callable[[Info], None] | Callable[[Info], Awaitable[None]]


def is_async_callable(func: object) -> bool:
    """True for ``async def`` functions, partials of them and objects with an async ``__call__``."""
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(type(func), "__call__", None)  # noqa: B004 - we want the class attribute, not callable()
    return call is not None and inspect.iscoroutinefunction(call)


def parameter_annotations(func: Callable[..., object]) -> list[object]:
    """The resolved annotations of ``func``'s positional parameters, in order (``None`` if absent)."""
    target: Any = func
    if not (inspect.isfunction(target) or inspect.ismethod(target)) and not isinstance(target, functools.partial):
        target = type(target).__call__
    try:
        hints = typing.get_type_hints(target)
        params = list(inspect.signature(func).parameters.values())
    except (NameError, TypeError, ValueError):
        # Unresolvable forward references or builtins without signatures:
        # the caller reports "cannot infer" and asks for explicit types.
        return []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [hints.get(p.name) for p in params if p.kind in positional]


def message_class(candidate: object) -> type[Message] | None:
    """``candidate`` if it is a protobuf message class, else None."""
    if isinstance(candidate, type) and issubclass(candidate, Message):
        return candidate
    return None


def require_message_class(candidate: object, what: str) -> type[Message]:
    """``candidate`` as a message class, or a TypeError naming ``what``."""
    cls = message_class(candidate)
    if cls is None:
        raise TypeError(f"{what} must be a protobuf message class, got {candidate!r}")
    return cls


def resolve_message_type(
    given: object | None,
    infer: Callable[[], type[Message] | None],
    *,
    handler: Callable[..., object],
    param: str,
    annotate: str,
    example: str,
) -> type[Message]:
    """The message type a user passed as ``param``, else the one ``infer`` reads from ``handler``.

    ``infer`` runs only when nothing was given. When it finds nothing, the
    TypeError says how to fix it: "annotate its {annotate}" or pass
    ``{param}={example}``.
    """
    if given is not None:
        return require_message_class(given, param)
    found = infer()
    if found is None:
        name = getattr(handler, "__qualname__", repr(handler))
        what = param.replace("_", " ")
        raise TypeError(f"cannot infer the {what} of {name}: annotate its {annotate} or pass {param}={example}")
    return found


def adapt_hook(hook: UserHook[Info] | None, info: Callable[[], Info]) -> Hook | None:
    """Turn a user's hook into a coroutine hook.

    A sync hook runs in a worker thread: a start hook that loads an index
    for a minute must not block the event loop, or health checks would time
    out instead of answering NOT_SERVING.
    """
    if hook is None:
        return None
    user_hook = hook
    if is_async_callable(user_hook):

        async def run_async() -> None:
            await typing.cast(Callable[[Info], Awaitable[None]], user_hook)(info())

        return run_async

    async def run_sync() -> None:
        await asyncio.to_thread(user_hook, info())

    return run_sync
