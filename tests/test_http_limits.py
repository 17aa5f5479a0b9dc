"""The gateway's own HTTP surface under slow and greedy clients, against a real `sluis
serve`: slow request heads are dropped, connections over the cap get a 503 and the gateway
serves normal clients afterwards, failed accepts and malformed requests log one line each
(no tracebacks, no request bytes)."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from pathlib import Path

import orjson

from tests.serve_helpers import running_gateway


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed (or reset) the connection."""
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 503")


def test_clients_that_drip_their_request_head_are_dropped(tmp_path: Path) -> None:
    with running_gateway(tmp_path, header_timeout="1") as gw:
        socks = [_connect(gw.port) for _ in range(20)]
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        started, closed_at = time.monotonic(), {}
        for step in range(40):  # one byte per client every 0.1 s, for at most 4 s
            for i, sock in enumerate(socks):
                if i in closed_at:
                    continue
                if _closed_by_peer(sock):
                    closed_at[i] = time.monotonic() - started
                    continue
                with contextlib.suppress(OSError):
                    sock.send(request[step : step + 1])
            if len(closed_at) == len(socks):
                break
            time.sleep(0.1)
        for sock in socks:
            sock.close()
        assert len(closed_at) == len(socks), f"{len(closed_at)} of {len(socks)} dropped"
        assert max(closed_at.values()) < 3.0
        assert gw.call("/healthz")[0] == 200
    assert "Traceback" not in gw.log()


def test_connections_over_the_cap_are_refused_and_the_gateway_recovers(tmp_path: Path) -> None:
    with running_gateway(tmp_path, header_timeout="1.5", max_connections="10") as gw:
        socks = [_connect(gw.port) for _ in range(40)]
        time.sleep(0.5)
        refused = []
        for sock in socks:
            try:
                head = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                refused.append(b"")
                continue
            refused.append(head)
        assert len(refused) >= 25  # at most ~10 held (plus those in flight), the rest refused
        answered = [h for h in refused if h]
        assert answered and all(h.startswith(b"HTTP/1.1 503") for h in answered)
        body = orjson.loads(answered[0].partition(b"\r\n\r\n")[2])
        assert body["status"] == 503 and body["type"].startswith("urn:sluis:problem:")
        # The idle ones time out; a normal client is then served.
        deadline = time.monotonic() + 10
        status = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status = gw.call("/healthz")[0]
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200
        for sock in socks:
            sock.close()
    log = gw.log()
    assert log.count("refused a connection") <= 2
    assert "Traceback" not in log


def test_out_of_file_descriptors_logs_one_line_not_a_traceback_per_accept(
    tmp_path: Path,
) -> None:
    with running_gateway(tmp_path, header_timeout="3") as gw:
        soft, hard = resource.prlimit(gw.proc.pid, resource.RLIMIT_NOFILE)
        # Lowered after the start, under the connection cap the gateway fitted to the old one.
        resource.prlimit(gw.proc.pid, resource.RLIMIT_NOFILE, (48, hard))
        socks = []
        try:
            for _ in range(80):
                with contextlib.suppress(OSError):
                    socks.append(socket.create_connection(("127.0.0.1", gw.port), timeout=2))
            time.sleep(2.5)  # asyncio retries a failed accept once a second
        finally:
            for sock in socks:
                sock.close()
            resource.prlimit(gw.proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
        deadline = time.monotonic() + 10
        status = 0
        while time.monotonic() < deadline and status != 200:
            with contextlib.suppress(OSError):
                status = gw.call("/healthz")[0]
            time.sleep(0.2)
        assert status == 200
    log = gw.log()
    assert "cannot accept connections: Too many open files" in log
    assert log.count("cannot accept connections") <= 2
    assert "Traceback" not in log
    assert len(log.splitlines()) < 40


def test_a_malformed_request_gets_a_problem_that_quotes_nothing(tmp_path: Path) -> None:
    secret = b"s3cr3t-" + b"x" * (1024 * 1024)
    with running_gateway(tmp_path) as gw:
        for bad in (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret + b"\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: jan@example.nl\x00\r\n\r\n",
            b"G\x01T / HTTP/1.1\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
                with contextlib.suppress(OSError):
                    raw.sendall(bad)
                reply = b""
                with contextlib.suppress(OSError):
                    while chunk := raw.recv(65536):
                        reply += chunk
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.") and head[9:10] == b"4", head[:100]
            assert b"content-type: application/problem+json" in head.lower()
            problem = orjson.loads(body)
            assert problem["status"] == int(head[9:12])
            assert b"s3cr3t" not in reply and b"jan@" not in reply and b"\x01" not in body
            assert len(reply) < 1000
    log = gw.log()
    assert "Traceback" not in log
    assert "s3cr3t" not in log and "jan@example.nl" not in log
    assert log.count("refused a malformed HTTP request") >= 2


def test_sluis_demo_answers_a_malformed_request_with_a_problem_and_one_line(
    tmp_path: Path,
) -> None:
    import signal
    import subprocess
    import sys
    import urllib.request

    from tests.serve_helpers import REPO
    from tests.support import free_port

    port = free_port()
    err_path = tmp_path / "demo.err"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "demo", "--serve", "--employees", "20",
             "--port", str(port), "--data-dir", str(tmp_path / "data")],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(
                b"GET / HTTP/1.1\r\nAuthorization: Bearer " + b"s3cr3t" * 4000 + b"\r\n\r\n"
            )
            reply = raw.recv(65536)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert b"application/problem+json" in reply and b"s3cr3t" not in reply
    log = err_path.read_text()
    assert "Traceback" not in log and "s3cr3t" not in log
    assert log.count("refused a malformed HTTP request") == 1
