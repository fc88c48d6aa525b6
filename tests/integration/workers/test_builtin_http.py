"""builtin.http against a real HTTP server on loopback: retries with backoff on 5xx/429 and
connection errors, 4xx fails for good, the per-host circuit breaker opens."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workers.builtin import http
from workers.registry import NonRetryableError, RetryableError, TaskContext


class Server:
    """Answers from a script of statuses (the last one repeats); records every request."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[dict[str, object]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append(
                    {"method": self.command, "path": self.path, "body": body,
                     "key": self.headers.get("idempotency-key")}
                )  # fmt: skip
                index = min(len(server.requests), len(server.statuses)) - 1
                status = server.statuses[index]
                payload = json.dumps({"n": len(server.requests), "echo": body.decode()}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[type[Server]]:
    servers: list[Server] = []

    def make(statuses: list[int]) -> Server:
        s = Server(statuses)
        servers.append(s)
        return s

    yield make  # type: ignore[misc]
    for s in servers:
        s.close()


def ctx() -> TaskContext:
    return TaskContext("wf:s:run:1", "wf", "s", 1, "step", deadline=time.time() + 30)


async def test_transient_errors_are_retried_then_the_answer_is_the_output(serve) -> None:
    server = serve([503, 429, 200])

    output = await http({"url": server.url + "/pay", "method": "POST", "json": {"a": 1}}, ctx())

    assert output == {"status": 200, "json": {"n": 3, "echo": '{"a":1}'}}
    assert [r["method"] for r in server.requests] == ["POST"] * 3
    assert all(r["key"] == "wf:s:run:1" for r in server.requests)


async def test_4xx_fails_for_good_without_retrying(serve) -> None:
    server = serve([404])

    with pytest.raises(NonRetryableError, match="HTTP 404"):
        await http({"url": server.url + "/missing"}, ctx())
    assert len(server.requests) == 1


async def test_still_failing_after_all_attempts_is_retryable(serve) -> None:
    server = serve([500])

    with pytest.raises(RetryableError, match="HTTP 500"):
        await http({"url": server.url, "attempts": 2}, ctx())
    assert len(server.requests) == 2


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(RetryableError, match="ConnectError"):
        await http({"url": f"http://127.0.0.1:{port}/", "attempts": 2}, ctx())


async def test_the_breaker_opens_per_host_and_fails_fast(serve) -> None:
    server = serve([500])
    for _ in range(5):  # the default breaker opens after 5 consecutive failures
        with pytest.raises(RetryableError):
            await http({"url": server.url, "attempts": 1}, ctx())
    assert len(server.requests) == 5

    with pytest.raises(RetryableError, match="circuit breaker open"):
        await http({"url": server.url, "attempts": 1}, ctx())
    assert len(server.requests) == 5  # the open breaker never called the host

    other = serve([200])  # another host (port) has its own breaker
    assert (await http({"url": other.url, "attempts": 1}, ctx()))["status"] == 200
