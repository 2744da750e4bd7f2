"""`search serve` as a real server on 127.0.0.1: idle and slow clients
cannot stop it, and its own error answers are JSON with the security
headers, like the app's."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest

from conftest import ON_SHARED_SERVERS

pytestmark = ON_SHARED_SERVERS


@pytest.fixture
def server(sample_server) -> int:
    """The port of `search serve --workers 2` over the sample articles."""
    return int(sample_server.rsplit(":", 1)[1])


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.alone  # every answer within 1 s
def test_idle_half_open_connections_do_not_stop_the_site(server):
    idle = []
    try:
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", server), timeout=10)
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end
            idle.append(sock)
        slowest = 0.0
        for _ in range(20):
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{server}/api/search?q=%E8%B7%A8%E5%A2%83", timeout=5) as r:
                assert r.status == 200 and json.loads(r.read())["total"] > 0
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 1.0, slowest
    finally:
        for sock in idle:
            sock.close()


SECURITY = ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT A REQUEST\r\n\r\n", 400),
        (b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\nConnection: close\r\n\r\n", 431),
        (b"GET /api/search?q=" + b"%E8%B7%A8" * 2000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 414),
        (b"GET /api/search?q=x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n", 413),
    ],
)
def test_the_servers_own_errors_are_json_with_the_security_headers(server, request_bytes, status):
    got, headers, body = _exchange(server, request_bytes)
    assert got == status, body[:300]
    assert headers["content-type"].startswith("application/json"), headers
    assert set(json.loads(body)["error"]) == {"code", "message", "field"}
    assert all(name in headers for name in SECURITY), headers


def test_a_long_query_typed_into_the_box_reaches_the_page(server):
    # 1,000 Chinese characters: about 9 KB percent-encoded, over gunicorn's
    # own 8,190-byte limit. The page answers it (here: too many words).
    query = "%E8%B7%A8%E5%A2%83" * 500
    got, headers, body = _exchange(server, f"GET /?q={query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert got == 400 and "x-frame-options" in headers, body[:300]
    page = body.decode("utf-8")
    assert 'role="alert"' in page and "查询中的词语或运算符太多了" in page, page[-800:]  # "more than 48 words"


def test_a_stopped_server_exits_cleanly_after_taking_commits(make_index):
    """SIGTERM after the workers picked up a commit in the background: exit
    status 0 and nothing printed on the way out (the refresher's threads
    and frozen objects used to make every stop print errors)."""
    import os
    import signal
    import urllib.parse

    from tests.conftest import running_server

    ix = make_index([{"id": "a1", "title": "海外仓 动态", "body": "跨境物流的消息。"}])
    with running_server(ix.settings.index) as (base, proc):
        ix.add([{"id": "b1", "title": "支付 动态", "body": "跨境支付的消息。"}])
        deadline = time.monotonic() + 20
        url = base + "/api/search?" + urllib.parse.urlencode({"q": "支付"})
        while json.loads(urllib.request.urlopen(url, timeout=10).read())["total"] == 0:
            assert time.monotonic() < deadline, "the commit was not served"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert proc.returncode == 0, out
    assert "Exception ignored" not in out and "Traceback" not in out, out
