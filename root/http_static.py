"""Files of ``[http] static_dir``, served read-only beside ``POST /v1/query`` on the same listener.

What it is for: a page in the browser that calls ``/v1/query`` from the
same origin (the demo's search page, demo_search/web), so no CORS and no
second server. Not a general web server: a small folder of pages.

Rules:

1. GET and HEAD only; anything else is 405 with ``Allow: GET, HEAD``.
2. The target is percent-decoded once. It maps to a file below the folder
   only if every segment is a plain name: no empty segment (``//``), no
   ``.`` or ``..``, no segment starting with ``.`` (hidden files), no
   backslash or NUL. ``/`` and a target ending in ``/`` mean its
   ``index.html``. The resolved path (symbolic links followed) must still be
   inside the folder. Anything else, a folder, or a missing file: 404. No
   directory listing, ever.
3. Content types by extension from one table (``CONTENT_TYPES``), text in
   UTF-8; an extension not in it is ``application/octet-stream``.
4. Every answer carries ``SECURITY_HEADERS``: a Content-Security-Policy of
   ``default-src 'self'`` (no inline script or style, no other origin, no
   framing), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy:
   no-referrer``, and ``Cache-Control: no-cache`` (revalidate: a new
   release's page is seen at once).
5. A file over ``max_bytes`` (the root's ``max_message_bytes``) is not
   served (500, logged): the folder is for pages, not downloads. Files are
   read on a thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from pathlib import Path

from scatter_common.http_server import Response

__all__ = ["CONTENT_TYPES", "SECURITY_HEADERS", "StaticFiles", "resolve"]

log = logging.getLogger("scatter.root")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)
INDEX = "index.html"


def _plain(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, "text/plain; charset=utf-8", (text + "\n").encode(), (*SECURITY_HEADERS, *headers))


def resolve(folder: Path, target: str) -> Path | None:
    """The file below ``folder`` (already resolved) that ``target`` names, or None (rule 2)."""
    if not target.startswith("/"):
        return None
    path = urllib.parse.unquote(target, errors="strict") if "%" in target else target
    segments = path[1:].split("/")
    if segments[-1] == "":
        segments[-1] = INDEX
    for segment in segments:
        if not segment or segment.startswith(".") or "\\" in segment or "\x00" in segment:
            return None
    candidate = folder.joinpath(*segments).resolve()
    if not candidate.is_relative_to(folder) or not candidate.is_file():
        return None
    return candidate


class StaticFiles:
    """GET and HEAD of the files below ``folder``; ``await answer(method, target)``."""

    def __init__(self, folder: str, max_bytes: int) -> None:
        self.folder = Path(folder).resolve()
        self.max_bytes = max_bytes

    async def answer(self, method: str, target: str) -> Response:
        if method not in ("GET", "HEAD"):
            return _plain(405, f"{method[:20]} is not served here: files take GET or HEAD", (("Allow", "GET, HEAD"),))
        return await asyncio.to_thread(self._read, target)

    def _read(self, target: str) -> Response:
        try:
            found = resolve(self.folder, target)
        except (UnicodeDecodeError, ValueError, OSError):
            found = None
        if found is None:
            return _plain(404, "no such file")
        try:
            size = found.stat().st_size
            if size > self.max_bytes:
                log.warning("HTTP static file %s is %d bytes, over max_message_bytes: not served", found, size)
                return _plain(500, "the file is too large to serve")
            with open(found, "rb") as file:
                body = file.read(self.max_bytes + 1)
        except OSError as exc:
            log.warning("HTTP static file %s cannot be read: %s", found, exc.strerror or exc)
            return _plain(404, "no such file")
        content_type = CONTENT_TYPES.get(os.path.splitext(found.name)[1].lower(), "application/octet-stream")
        return Response(200, content_type, body, SECURITY_HEADERS)
