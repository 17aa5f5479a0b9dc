"""`sluis demo`: the whole gateway on one machine, with nothing else running.

Starts the AFAS and HubSpot emulators (or those `--sources` names: any fetched type, e.g.
`personio` or `sftp`) on 127.0.0.1 with
synthetic people, a gateway on SQLite in a fresh data directory, and then does what a
customer admin and the platform do, through the gateway's own HTTP API: create a tenant,
connect the sources, authorise them,
sync, create a feed consumer and read the feed. It ends with a short report (what passed,
what was dropped, the first feed events, the ledger and its verification) and the URLs and
tokens to try; `--serve` keeps everything running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import secrets
import sys
import tempfile
import textwrap
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import pyotp
from aiohttp import web

from connectors.registry import connector_type, pull_types
from gateway.accounts.principal import Principal
from gateway.api.app import make_app
from gateway.api.protocol import start_site
from gateway.runtime.config import Settings
from gateway.runtime.logs import configure_logging
from gateway.runtime.services import Services
from gateway.store.account_records import Role

DEMO_TENANT: Final = "demo"
#: The sources the demo connects unless `--sources` names others: one HRM and one CRM.
DEFAULT_SOURCES: Final = ("afas", "hubspot")


class DemoError(Exception):
    pass


@dataclass(frozen=True)
class DemoPerson:
    """An enrolled demo account: what a person needs to sign in to the console."""

    role: str
    email: str
    password: str = field(repr=False)
    totp_secret: str = field(repr=False)
    #: An API token of this account (for curl).
    token: str = field(repr=False)


@dataclass
class DemoResult:
    gateway_url: str
    admin_token: str
    feed_token: str
    data_dir: Path
    people: list[DemoPerson] = field(default_factory=list)
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    ledger_size: int = 0
    ledger_root: str = ""
    verified: bool = False
    verify_reason: str | None = None


async def _start_site(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    # The same connection layer as `sluis serve`: limits, problem bodies for unparsable
    # requests, one log line for each instead of a traceback. No access log: the demo's
    # output is its report.
    runner, site = await start_site(app, "127.0.0.1", port, access_log=None)
    return runner, f"http://127.0.0.1:{site.port}"


class _Api:
    """A thin client of the gateway's admin API (what a customer's admin UI would call)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        self.session, self.base = session, base
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(
            method, self.base + path, json=body, headers=self.headers
        ) as response:
            payload = await response.json(content_type=None)
            if response.status >= 400:
                detail = payload.get("detail") if isinstance(payload, dict) else None
                raise DemoError(f"{method} {path}: HTTP {response.status}: {detail}")
            return payload


async def run_demo(
    *,
    employees: int,
    data_dir: Path,
    port: int = 0,
    seed: int = 2026,
    sources: tuple[str, ...] = DEFAULT_SOURCES,
) -> AsyncGenerator[DemoResult, None]:
    """Set everything up, sync, and yield the result while it all keeps running."""
    runners: list[web.AppRunner] = []
    settings = Settings(
        data_dir=data_dir,
        admin_token=secrets.token_urlsafe(24),
        port=port,
        scheduler=False,
        allow_private_sources=True,  # the emulators listen on 127.0.0.1
    )
    services = Services.open(settings)
    try:
        urls = {}
        for type_name in sources:
            kind = connector_type(type_name)
            app = kind.emulator(people=employees, seed=seed)
            runner, url = await _start_site(app)
            runners.append(runner)
            urls[type_name] = kind.emulator_base_url(app, url)
        runner, gateway_url = await _start_site(make_app(services), port)
        runners.append(runner)
        operator = await asyncio.to_thread(
            _person, services, tenant=None, role="operator", email="operator@gateway.example",
            name="Demo Operator",
        )  # fmt: skip
        async with aiohttp.ClientSession() as session:
            result = await _walk_through(
                session, gateway_url, services, urls, data_dir, operator=operator
            )
        yield result
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        services.close()


def _person(
    services: Services, *, tenant: str | None, role: Role, email: str, name: str
) -> DemoPerson:
    password = "-".join(secrets.token_urlsafe(6) for _ in range(3))
    secret = pyotp.random_base32()
    account, _ = services.accounts.create_active_account(
        tenant=tenant, role=role, email=email, name=name, password=password, totp_secret=secret
    )
    me = Principal(account.id, role, tenant, "demo")
    until = services.clock() + timedelta(days=7)
    _, token = services.accounts.create_token(me, name="sluis demo", role=role, expires_at=until)
    return DemoPerson(role, email, password, secret, token)


async def _walk_through(
    session: aiohttp.ClientSession,
    gateway_url: str,
    services: Services,
    urls: dict[str, str],
    data_dir: Path,
    *,
    operator: DemoPerson,
) -> DemoResult:
    as_operator = _Api(session, gateway_url, operator.token)
    t = f"/admin/v1/tenants/{DEMO_TENANT}"
    await as_operator.call("POST", "/admin/v1/tenants", {"id": DEMO_TENANT, "name": "Demo BV"})
    # The customer's admin: enrolled with a password and an authenticator, acting through
    # an API token; the guarded steps (authorise, create a consumer) need a fresh code.
    made = await asyncio.to_thread(
        _person, services, tenant=DEMO_TENANT, role="admin", email="admin@demo.example",
        name="Demo Admin",
    )  # fmt: skip
    admin = _Api(session, gateway_url, made.token)
    await admin.call("POST", "/admin/v1/step-up", {"code": pyotp.TOTP(made.totp_secret).now()})
    result = DemoResult(gateway_url, made.token, "", data_dir, [operator, made])
    for connector_id, type_name in ((name, name) for name in urls):
        kind = connector_type(type_name)
        credentials = dict(kind.emulator_credentials)
        created = await admin.call(
            "POST",
            f"{t}/connectors",
            {
                "id": connector_id,
                "type": type_name,
                "base_url": urls[connector_id],
                "credentials": credentials,
                "settings": kind.settings_for_emulator(urls[connector_id]),
                "mapping": type_name,
            },
        )
        await admin.call(
            "POST",
            f"{t}/connectors/{connector_id}/instructions",
            {"purpose": "Accounts on the learning platform"},
        )
        run = await admin.call("POST", f"{t}/connectors/{connector_id}/syncs", {"mode": "full"})
        while run["status"] == "running":
            await asyncio.sleep(0.05)
            run = await admin.call("GET", f"{t}/connectors/{connector_id}/syncs/{run['id']}")
        if run["status"] != "succeeded":
            raise DemoError(f"sync of {connector_id} ended {run['status']}: {run.get('error')}")
        result.connectors[connector_id] = {
            "counts": run["counts"],
            "fields": created["mapping"]["fields"],
            "dropped": set(),
            "leavers": leavers(run["counts"]),
        }
    consumer = await admin.call("POST", f"{t}/consumers", {"name": "learning-platform"})
    result.feed_token = consumer["token"]
    feed = _Api(session, gateway_url, consumer["token"])
    page = await feed.call("GET", f"/feed/v1/tenants/{DEMO_TENANT}/events?limit=5")
    result.events = page["events"]
    ledger = await admin.call("GET", f"{t}/ledger?limit=1000")
    for item in ledger["entries"]:
        entry = item["entry"]
        if entry.get("direction") == "inbound" and entry["connector"] in result.connectors:
            result.connectors[entry["connector"]]["dropped"].update(entry["dropped_field_names"])
    led = services.ledger(DEMO_TENANT)
    result.ledger_size = led.size()
    # The encoding `sluis audit verify` prints, so the two can be compared by eye.
    result.ledger_root = base64.b64encode(led.root()).decode("ascii")
    report = await asyncio.to_thread(led.verify, services.signer.public_key)
    result.verified, result.verify_reason = report.ok, report.reason
    return result


def leavers(counts: dict[str, int]) -> int:
    """Subjects that passed the door but made no event: the mapping's leaver rule says they
    have left (an AFAS end date in the past, an archived HubSpot contact), and someone the
    platform never had needs no account and no deletion."""
    made = counts["upserted"] + counts["unchanged"] + counts["deleted"]
    return max(0, counts["passed"] - made)


def format_report(result: DemoResult, *, serving: bool = False) -> str:
    lines = ["", "Sluis demo", "=========="]
    for name, info in result.connectors.items():
        c = info["counts"]
        lines.append(
            f"{name:<8} fetched {c['fetched']:>6,}  passed {c['passed']:>6,}  "
            f"quarantined {c['quarantined']:>4,}  feed events {c['upserted']:>6,}"
        )
        if info["leavers"]:
            lines += textwrap.wrap(
                f"{c['upserted']:,} events for {c['passed']:,} people: the other"
                f" {info['leavers']:,} are leavers (gone per the mapping's [[leaver]] rule),"
                " who get no account",
                96,
                initial_indent=" " * 9,
                subsequent_indent=" " * 11,
            )
        fields = ", ".join(f"{k} ({v})" for k, v in info["fields"].items())
        lines += textwrap.wrap(
            f"passed through: {fields}", 96, initial_indent=" " * 9, subsequent_indent=" " * 11
        )
        dropped = sorted(info["dropped"])
        lines += textwrap.wrap(
            f"dropped at the door ({len(dropped)}): {', '.join(dropped)}",
            96,
            initial_indent=" " * 9,
            subsequent_indent=" " * 11,
        )
    lines.append("")
    lines.append("First feed events:")
    for e in result.events:
        d = e.get("data") or {}
        lines.append(
            f"  #{e['seq']} {e['type']} {e['subject_id'][:12]}… "
            f"{d.get('first_name')} {d.get('last_name')} <{d.get('email')}> {d.get('job_title')}"
        )
    verdict = "intact" if result.verified else f"FAILED ({result.verify_reason})"
    lines += [
        "",
        f"Ledger: {result.ledger_size} entries, verification: {verdict},",
        f"        root {result.ledger_root} (as `sluis audit verify` prints it)",
        "",
        "Try it:" if serving else "Try it (these URLs answer while `sluis demo --serve` runs):",
        f"  feed     curl -H 'Authorization: Bearer {result.feed_token}' "
        f"{result.gateway_url}/feed/v1/tenants/{DEMO_TENANT}/events?limit=3",
        f"  admin    curl -H 'Authorization: Bearer {result.admin_token}' "
        f"{result.gateway_url}/admin/v1/tenants/{DEMO_TENANT}/connectors",
        f"  metrics  curl {result.gateway_url}/metrics",
        f"  openapi  {result.gateway_url}/openapi.json",
        f"  audit    sluis audit verify --data-dir {result.data_dir}",
        "",
        f"Sign in to the console at {result.gateway_url}/console/ "
        "(add the TOTP secret to an authenticator app):",
    ]
    for person in result.people:
        lines.append(
            f"  {person.role:<9} {person.email}  password {person.password}  "
            f"TOTP secret {person.totp_secret}"
        )
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> int:
    if args.data_dir:
        data_dir = Path(args.data_dir)
        if data_dir.exists() and any(data_dir.iterdir()):
            print(f"sluis demo: {data_dir} is not empty; give a fresh directory", file=sys.stderr)
            return 2
    else:
        # Kept after the demo, so that `sluis audit verify --data-dir ...` can check it.
        data_dir = Path(tempfile.mkdtemp(prefix="sluis-demo-"))
    demo = run_demo(
        employees=args.employees, data_dir=data_dir, port=args.port, sources=args.sources
    )
    try:
        result = await anext(demo)
    except DemoError as exc:
        print(f"sluis demo: {exc}", file=sys.stderr)
        return 1
    print(format_report(result, serving=args.serve), flush=True)
    try:
        if args.serve:
            print("\nServing until Ctrl-C …", flush=True)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
    finally:
        await demo.aclose()
    return 0 if result.verified else 1


def _run(args: argparse.Namespace) -> int:
    if args.employees < 1 or args.employees > 1_000_000:
        print("sluis demo: --employees must be between 1 and 1,000,000", file=sys.stderr)
        return 2
    configure_logging("text", "INFO")
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the whole gateway locally against bundled emulators",
        description=(
            "Start the sources' emulators (AFAS and HubSpot unless --sources says otherwise), "
            "a gateway on SQLite, connect and authorise the sources, sync, read the feed, "
            "and report."
        ),
    )
    parser.add_argument("--employees", type=int, default=1000, help="people per source")
    parser.add_argument("--serve", action="store_true", help="keep running until Ctrl-C")
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: any free)")
    parser.add_argument("--data-dir", help="where to keep the data (default: a temp dir)")
    parser.add_argument(
        "--sources",
        type=_sources,
        default=DEFAULT_SOURCES,
        help=f"comma-separated source types (default {','.join(DEFAULT_SOURCES)}; "
        f"any of {','.join(pull_types())})",
    )
    parser.set_defaults(run=_run)


def _sources(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in pull_types()]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown source type {unknown[0] if unknown else text!r}; "
            f"choose from {', '.join(pull_types())}"
        )
    return names
