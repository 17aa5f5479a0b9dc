"""Slow clients against a real `sluis serve` under a low file-descriptor limit.

Run from the repository root:

    .venv/bin/python bench/bench_slow_clients.py                 # 500 clients, ulimit -n 256
    .venv/bin/python bench/bench_slow_clients.py --connections 200 --nofile 1024

It starts `sluis serve` on a free port of 127.0.0.1 with RLIMIT_NOFILE lowered, opens
`--connections` connections that each send one byte of a request head every `--interval`
seconds (for `--steps` rounds), and after every round reports how many of them the gateway
still holds and whether a normal client gets an answer. At the end it counts the gateway's
log lines and tracebacks. Everything is bounded: the gateway is stopped by its pid.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _normal_client(port: int) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(100)[:12].decode(errors="replace") or "closed"
    except OSError as exc:
        return type(exc).__name__


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--nofile", type=int, default=256)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sluis-slow-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUIS_")}
    env.update(
        SLUIS_DATA_DIR=str(work / "data"),
        SLUIS_PORT=str(port),
        SLUIS_ADMIN_TOKEN="bench-admin-token-0123456789",
        SLUIS_SCHEDULER="false",
    )
    log_path = work / "serve.log"

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))

    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "serve"], cwd=REPO, env=env,
            # Single-threaded here, so preexec_fn is safe.
            stdout=subprocess.DEVNULL, stderr=log, preexec_fn=lower_limit,  # noqa: PLW1509
        )  # fmt: skip
    socks: list[socket.socket] = []
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.1)
        started = time.monotonic()
        for _ in range(args.connections):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                continue
            sock.setblocking(False)
            socks.append(sock)
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        alive = set(range(len(socks)))
        print(f"{len(socks)} of {args.connections} connected")
        for step in range(args.steps):
            for i in list(alive):
                try:
                    data = socks[i].recv(4096)
                    if data == b"" or data.startswith(b"HTTP/1.1 503"):
                        alive.discard(i)
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    alive.discard(i)
                    continue
                try:
                    socks[i].send(head[step : step + 1])
                except OSError:
                    alive.discard(i)
            elapsed = time.monotonic() - started
            print(f"t={elapsed:5.1f}s  slow connections held: {len(alive):4d}  "
                  f"normal client: {_normal_client(port)}", flush=True)  # fmt: skip
            time.sleep(args.interval)
    finally:
        for sock in socks:
            sock.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log_path.read_text(errors="replace")
    print(f"gateway log: {len(text.splitlines())} lines, {text.count('Traceback')} tracebacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
