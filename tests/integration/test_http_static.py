"""``[http] static_dir`` on a real root: files served read-only beside /v1/query, nothing else.

A probe deployment whose root serves a folder with a page, its assets, a
sub-folder, a hidden file and a link out of it; a secret file sits next to
the folder. Every way out of the folder (``..``, encoded, doubly encoded,
backslashes, links) is 404, as are folders (no listing) and unknown paths;
only GET and HEAD are served; the demo's shipped page is served with its
content types.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo_search.cli import WEB_DIR
from tests._cluster import probe_cluster


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("static")
    (base / "secret.txt").write_text("SECRET")
    site = base / "site"
    (site / "sub").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>t</title>")
    (site / "app.js").write_text("console.log(1)")
    (site / "style.css").write_text("body{}")
    (site / "sub" / "a.txt").write_text("in sub")
    (site / "data.bin").write_bytes(b"\x00\x01")
    (site / ".hidden").write_text("SECRET")
    (site / "out").symlink_to(base / "secret.txt")
    return site


@pytest.fixture(scope="module")
def root(site: Path) -> Iterator[str]:
    extra = {"http": {"listen": "127.0.0.1:0", "static_dir": str(site)}}
    with probe_cluster(shards=1, replicas=1, extra=extra) as deployment:
        yield deployment.children["root"].http_address


def get(address: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_files_are_served_with_their_content_types_and_security_headers(root: str) -> None:
    for path, content_type, body in [
        ("/", "text/html; charset=utf-8", b"<!doctype html><title>t</title>"),
        ("/index.html", "text/html; charset=utf-8", b"<!doctype html><title>t</title>"),
        ("/app.js", "text/javascript; charset=utf-8", b"console.log(1)"),
        ("/style.css?v=2", "text/css; charset=utf-8", b"body{}"),
        ("/sub/a.txt", "text/plain; charset=utf-8", b"in sub"),
        ("/sub/%61.txt", "text/plain; charset=utf-8", b"in sub"),
        ("/data.bin", "application/octet-stream", b"\x00\x01"),
    ]:
        status, headers, got = get(root, path)
        assert (status, headers["content-type"], got) == (200, content_type, body), path
        assert headers["content-security-policy"].startswith("default-src 'self'"), headers
        assert headers["x-content-type-options"] == "nosniff"
    status, headers, got = get(root, "/app.js", "HEAD")
    assert (status, got, headers["content-length"]) == (200, b"", str(len(b"console.log(1)")))


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/..%2fsecret.txt",
        "/sub/..%2F..%2Fsecret.txt",
        "/%252e%252e/secret.txt",
        "/..\\secret.txt",
        "/%5c..%5csecret.txt",
        "//secret.txt",
        "/out",
        "/.hidden",
        "/%2ehidden",
        "/sub",
        "/sub/",
        "/nope.html",
        "/index.html%00.txt",
        "/%ff",
        "secret.txt",
    ],
)
def test_anything_outside_or_not_a_file_is_404(root: str, path: str) -> None:
    status, _, body = get(root, path)
    assert status == 404, (path, body)
    assert b"SECRET" not in body


def test_only_get_and_head(root: str) -> None:
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, headers, _ = get(root, "/index.html", method)
        assert status == 405 and headers["allow"] == "GET, HEAD", method
    # The query door is still the query door.
    status, headers, _ = get(root, "/v1/query")
    assert status == 405 and headers["allow"] == "POST"


def test_the_demos_page_ships_in_the_package_and_is_served(tmp_path_factory: pytest.TempPathFactory) -> None:
    names = sorted(p.name for p in WEB_DIR.iterdir())
    assert names == ["index.html", "search.css", "search.js"]
    extra = {"http": {"listen": "127.0.0.1:0", "static_dir": str(WEB_DIR)}}
    with probe_cluster(shards=1, replicas=1, extra=extra) as deployment:
        address = deployment.children["root"].http_address
        for path, content_type in [
            ("/", "text/html"),
            ("/search.js", "text/javascript"),
            ("/search.css", "text/css"),
        ]:
            status, headers, body = get(address, path)
            assert status == 200 and headers["content-type"].startswith(content_type), path
            name = "index.html" if path == "/" else path[1:]
            assert body == (WEB_DIR / name).read_bytes()
