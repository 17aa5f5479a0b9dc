"""`sluis emulator afas|hubspot|personio|sftp|...`: one vendor emulator, standalone, until
Ctrl-C.

So a user can try a connector without a vendor account, and scripts and tests in other
processes need no private imports: it prints the base URL and credentials to configure a
connector with (the SFTP emulator's private key in a file, its host key fingerprint, and
an `sftp` command to look around), and serves the emulator's control surface (faults,
rate limit, request log, touch and retire people) under `/_emulator` (see
`connectors.emulator_kit`).
A gateway reaches it only with `allow_private_sources = true`: it listens on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from connectors.registry import connector_type, known_types
from gateway.api.protocol import start_site
from gateway.runtime.logs import configure_logging

MAX_EMPLOYEES = 1_000_000


def _employees(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= MAX_EMPLOYEES:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_EMPLOYEES}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be from 0 (any free port) to 65535")
    return value


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _serve(args: argparse.Namespace) -> None:
    kind = connector_type(args.vendor)
    app: web.Application = kind.emulator(people=args.employees, seed=args.seed)
    # The gateway's own connection layer: limits, and a problem body plus one quiet log
    # line for a request that cannot be parsed, instead of an echo and a traceback.
    runner, site = await start_site(app, args.host, args.port, access_log=None)
    try:
        port = site.port
        host = f"[{args.host}]" if ":" in args.host else args.host
        root = f"http://{host}:{port}"
        base_url = kind.emulator_base_url(app, root)
        lines = [
            f"sluis emulator: {args.vendor} with {args.employees} people (seed {args.seed})",
            f"base_url: {base_url}",
            *_credential_lines(dict(kind.emulator_credentials), base_url),
        ]
        if found := kind.settings_for_emulator(base_url):
            settings = ", ".join(f"{k}={v}" for k, v in found.items())
            lines.append(f"settings: {settings}")
        lines += [f"control: {root}/_emulator", "Press Ctrl-C to stop."]
        print("\n".join(lines), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def _credential_lines(credentials: dict[str, str], base_url: str) -> list[str]:
    """One line per credential; one spanning lines (a private key) goes to a file of its
    own (readable by this user only), as `ssh -i` and the console's form take it."""
    lines = []
    files: dict[str, Path] = {}
    for key, value in credentials.items():
        if "\n" in value:
            where = Path(tempfile.mkdtemp(prefix="sluis-emulator-")) / key
            where.touch(mode=0o600)
            where.write_text(value, encoding="ascii")
            files[key] = where
            lines.append(f"{key}: written to {where}")
        else:
            lines.append(f"{key}: {value}")
    url = urlsplit(base_url)
    if url.scheme == "sftp" and "private_key" in files:
        user = credentials.get("username", "")
        lines.append(
            f"try: sftp -P {url.port} -i {files['private_key']} "
            f"-o StrictHostKeyChecking=no {user}@{url.hostname}:{url.path}"
        )
        lines.append(
            f"host key: ssh-keyscan -p {url.port} {url.hostname} | ssh-keygen -lf - "
            "(the fingerprint above is the one to pin)"
        )
    return lines


def _run(args: argparse.Namespace) -> int:
    if not _is_loopback(args.host):
        print(
            f"sluis emulator: warning: listening on {args.host}; the control surface has no "
            "authentication, and anyone who can reach it can change the emulated data",
            file=sys.stderr,
        )
    configure_logging("text", "INFO")
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        print(f"sluis emulator: cannot listen on {args.host}:{args.port} ({exc.strerror})",
              file=sys.stderr)  # fmt: skip
        return 2
    print("sluis emulator: stopped", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "emulator",
        help="run one vendor emulator standalone (try a connector without a vendor account)",
        description=(
            "Serve an emulated vendor API (AFAS Profit, HubSpot, Personio, ...) or an SFTP "
            "drop of HR exports, "
            "with synthetic people, print its base URL and credentials, and serve its control "
            "surface (faults, rate limit, request log, touch/retire people) under "
            "/_emulator, until Ctrl-C."
        ),
    )
    parser.add_argument("vendor", choices=known_types(), help="which vendor API to emulate")
    parser.add_argument("--port", type=_port, default=0, help="port (default: any free port)")
    parser.add_argument(
        "--employees", type=_employees, default=100, help="synthetic people (default 100)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--seed", type=int, default=2026, help="data seed (default 2026)")
    parser.set_defaults(run=_run)
