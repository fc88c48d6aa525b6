"""builtin.http against a real HTTP server on loopback: retries with backoff on 5xx/429 and
connection errors, 4xx fails for good, the per-host circuit breaker opens; loopback is
refused unless the allow-list opens it (by address, by name, through a redirect), the
connection goes to the address that was checked, and an oversized response fails clearly."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from foldflow.schemas.messages import TaskFailed
from foldflow.workers.builtin import registry as default_registry
from foldflow.workers.builtin_http import HttpOptions, http_task
from foldflow.workers.netpolicy import NetworkPolicy
from foldflow.workers.registry import NonRetryableError, RetryableError, TaskContext

#: builtin.http with loopback opened, as an operator would for a local service
http = http_task(HttpOptions(policy=NetworkPolicy.of(["127.0.0.1"])))
#: builtin.http as `foldflow run worker` serves it without FOLDFLOW_HTTP_ALLOW
default_http = default_registry.get("builtin.http").handler  # type: ignore[union-attr]


class Server:
    """Answers from a script of statuses (the last one repeats); records every request.

    ``redirect`` answers every request with a 302 there; ``body`` replaces the JSON echo
    (sent without a content-length when ``chunked``).
    """

    def __init__(self, statuses: list[int], *, redirect: str | None = None,
                 body: bytes | None = None, chunked: bool = False) -> None:
        self.statuses = statuses
        self.requests: list[dict[str, object]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if chunked else "HTTP/1.0"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                received = self.rfile.read(length) if length else b""
                server.requests.append(
                    {"method": self.command, "path": self.path, "body": received,
                     "key": self.headers.get("idempotency-key"),
                     "host": self.headers.get("host")}
                )  # fmt: skip
                if redirect is not None:
                    self.send_response(302)
                    self.send_header("location", redirect)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                index = min(len(server.requests), len(server.statuses)) - 1
                status = server.statuses[index]
                payload = body if body is not None else json.dumps(
                    {"n": len(server.requests), "echo": received.decode()}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                if chunked:
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(payload), 4096):
                        part = payload[i : i + 4096]
                        self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[type[Server]]:
    servers: list[Server] = []

    def make(statuses: list[int], **kwargs: object) -> Server:
        s = Server(statuses, **kwargs)  # type: ignore[arg-type]
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


async def test_loopback_is_refused_by_default_by_address_and_by_name(serve) -> None:
    server = serve([200])
    for url in (server.url, f"http://localhost:{server.port}/metrics",
                f"http://[::ffff:127.0.0.1]:{server.port}/"):
        with pytest.raises(NonRetryableError, match=r"loopback address.*FOLDFLOW_HTTP_ALLOW"):
            await default_http({"url": url}, ctx())
    assert server.requests == []  # refused before any connection


async def test_a_redirect_is_checked_like_the_first_request(serve) -> None:
    inner = serve([200])
    outer = serve([200], redirect=f"http://localhost:{inner.port}/secret")
    only_outer = http_task(HttpOptions(policy=NetworkPolicy.of([f"127.0.0.1:{outer.port}"])))

    with pytest.raises(NonRetryableError, match=r"refuses to call http://localhost:\d+/secret"):
        await only_outer({"url": outer.url, "follow_redirects": True}, ctx())
    assert len(outer.requests) == 1 and inner.requests == []
    # not followed unless asked: the redirect is the output
    assert (await only_outer({"url": outer.url}, ctx()))["status"] == 302
    # both allowed: followed
    output = await http({"url": outer.url, "follow_redirects": True}, ctx())
    assert output["status"] == 200 and inner.requests[0]["path"] == "/secret"


async def test_the_connection_goes_to_the_checked_address(serve) -> None:
    """A name only our resolver knows: the request reaches the server only if it went to
    the checked address (no second lookup), and the server sees the name it was sent to."""
    server = serve([200])

    async def resolver(host: str, port: int) -> list[ipaddress.IPv4Address]:
        assert host == "billing.test"
        return [ipaddress.IPv4Address("127.0.0.1")]

    pinned = http_task(HttpOptions(policy=NetworkPolicy.of([f"billing.test:{server.port}"]),
                                   resolver=resolver))
    output = await pinned({"url": f"http://billing.test:{server.port}/pay"}, ctx())
    assert output["status"] == 200
    assert server.requests[0]["host"] == f"billing.test:{server.port}"


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_oversized_response_fails_for_good_saying_so(serve, chunked: bool) -> None:
    server = serve([200], body=b'"' + b"x" * 100_000 + b'"', chunked=chunked)
    small = http_task(HttpOptions(policy=NetworkPolicy.of(["127.0.0.1"]),
                                  max_response_bytes=50_000))
    with pytest.raises(NonRetryableError, match="over the 50000-byte limit"):
        await small({"url": server.url}, ctx())
    assert len(server.requests) == 1  # not retried
    # under the cap for the body, over it as output (JSON escapes grow it)
    escaped = serve([200], body=b"\x01" * 30_000, chunked=chunked)
    with pytest.raises(NonRetryableError, match=r"output .* over the 50000-byte limit"):
        await small({"url": escaped.url}, ctx())


def test_a_running_worker_refuses_its_own_metrics_port(serve, send, results, start_worker):
    """What a tenant tried: read a service's /metrics through builtin.http."""
    metrics = serve([200])
    start_worker()
    send("builtin.http", {"url": f"http://127.0.0.1:{metrics.port}/metrics"})

    [result] = results.envelopes(1)

    assert isinstance(result.payload, TaskFailed)
    assert result.payload.retryable is False
    assert "127.0.0.1 is a loopback address" in result.payload.error
    assert metrics.requests == []
