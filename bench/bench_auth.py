"""Authentication benchmark: sign-in with TOTP under concurrency, and what an API token adds
to an admin API call; against a real gateway served on 127.0.0.1.

Run from the repository root:

    .venv/bin/python bench/bench_auth.py                 # 20 concurrent, 10 rounds, 2000 calls
    .venv/bin/python bench/bench_auth.py --concurrency 20 --rounds 20 --calls 5000

(a) Sign-in. `--concurrency` enrolled customer admins (argon2id parameters as shipped,
`gateway.accounts.passwords.HASHER`; TOTP secrets sealed under the master key) sign in at
the same moment, `--rounds` times: email, password and a current TOTP code, posted to the
console's sign-in form when the console is mounted, else to a bench route that calls the
same `Accounts.sign_in` on a worker thread, as the console does. Each sign-in verifies the
password hash, checks and spends the TOTP code (compare-and-set in the store), clears the
throttle and creates a session. A TOTP code is good once per 30-second step, so the
gateway's clock moves one step between rounds (the bench runs faster than real time; no
code is ever reused). Latency is measured by the client, request sent to answer read.
Baseline in the same run: `GET /healthz` at the same concurrency (the served path with no
work). Target: p99 < 300 ms.

(b) An admin API call. `GET /admin/v1/tenants/{tenant}/connectors` with an API token
(`sluis_tok_...`: hashed, looked up in the store, expiry and revocation checked, the route's
rule in the policy table checked for role and tenant) against the same handler behind the
check the gateway had before accounts: one constant-time comparison with a static token
(`bench_static` app, same problem middleware, served the same way). Calls are sequential,
in interleaved batches, so both see the same machine. The added cost per call is the
difference of the medians; `/healthz` is printed as the floor. Target: < 1 ms. An
in-process figure (the token lookup alone, `Accounts.bearer`, against `same_secret`) is
printed too, free of HTTP noise.

Figures on the project's shared 2-core machine (2026-11-30, through the console's form):
with argon2id t=2 m=19 MiB p=1, 20 at once gave p99 281-312 ms (floor ~200 ms), at or
over the target; the shipped t=4 m=9 MiB p=1 (an equivalent OWASP setting whose smaller
working set does not fight over the shared cache) gave p50 122-139 ms and p99 218-288 ms
in four runs, one sign-in alone 18-20 ms, /healthz at the same concurrency 5-6 ms. While
other test suites ran (load 2-4) p99 rose to 430-980 ms: the last of 20 hashes waits for
the other 19 on whatever cores are left. An API token added 0.20-0.28 ms per call (p50
1.77 vs 1.54 ms with the static-token check; the lookup itself is ~11 us, the rest is the
hop to a worker thread).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import pyotp  # noqa: E402
from aiohttp import web  # noqa: E402

from gateway.accounts import passwords  # noqa: E402
from gateway.api.admin import list_connectors  # noqa: E402
from gateway.api.app import make_app  # noqa: E402
from gateway.api.httpkit import SERVICES, bearer_token, same_secret, unauthorized  # noqa: E402
from gateway.api.problems import Handler, problem_middleware  # noqa: E402
from gateway.ledger.audit import SYSTEM  # noqa: E402
from gateway.ledger.record import Acting  # noqa: E402
from gateway.runtime.config import Settings  # noqa: E402
from gateway.runtime.services import Services  # noqa: E402
from gateway.tenancy import create_connector, create_tenant  # noqa: E402
from mappings import bundled_mapping  # noqa: E402

TENANT = "bench"
PASSWORD = "violet tram forgets 9 harbour lanterns"
STATIC_TOKEN = "bench-static-admin-token-0123456789abcdef"
SIGN_IN_TARGET_MS = 300.0
ADDED_COST_TARGET_MS = 1.0


@dataclass
class Clock:
    """Real time plus whole TOTP steps: each round of sign-ins gets fresh codes."""

    offset: timedelta = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Admin:
    email: str
    secret: str


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def prepare(services: Services, count: int) -> list[Admin]:
    store, box, now = services.store, services.box, datetime.now(UTC)
    system = Acting(SYSTEM, services.ledger(TENANT))
    create_tenant(store, box, TENANT, "Bench BV", now, by=system)
    for n in range(3):
        create_connector(
            store, box, tenant=TENANT, connector_id=f"hr{n}", type_name="afas",
            base_url="http://127.0.0.1:9/profitrestservices", credentials={"token": "x"},
            mapping_text=bundled_mapping("afas").read_text(encoding="utf-8"), now=now,
            by=system,
        )  # fmt: skip
    admins = []
    for n in range(count):
        secret = pyotp.random_base32()
        email = f"admin{n}@bench.example"
        services.accounts.create_active_account(
            tenant=TENANT, role="admin", email=email, name=f"Bench Admin {n}",
            password=PASSWORD, totp_secret=secret,
        )  # fmt: skip
        admins.append(Admin(email, secret))
    return admins


async def bench_sign_in_route(request: web.Request) -> web.Response:
    """What the console's sign-in does, without the page: for a gateway without the console."""
    services = request.config_dict[SERVICES]
    form = await request.post()
    signed = await asyncio.to_thread(
        services.accounts.sign_in,
        email=str(form["email"]),
        password=str(form["password"]),
        code=str(form["code"]),
        client=request.remote or "unknown",
    )
    return web.Response(status=303, headers={"Set-Cookie": f"s={signed.session}; HttpOnly"})


def _paths(app: web.Application) -> set[str]:
    """Every route's path template, sub-apps included (they carry their prefix)."""
    found = set()
    for resource in app.router.resources():
        sub = resource.get_info().get("app")
        found |= _paths(sub) if isinstance(sub, web.Application) else {resource.canonical}
    return found


def sign_in_path(app: web.Application) -> str:
    """The console's sign-in form when the console is mounted, else the bench route."""
    if "/console/sign-in" in _paths(app):
        return "/console/sign-in"
    app.router.add_post("/bench/sign-in", bench_sign_in_route)
    return "/bench/sign-in"


@web.middleware
async def static_token_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin API's check before accounts: one constant-time comparison."""
    token = bearer_token(request)
    if token is None or not same_secret(token, STATIC_TOKEN):
        raise unauthorized("sluis-admin", "the bearer token is not valid for the admin API")
    return await handler(request)


def static_app(services: Services) -> web.Application:
    app = web.Application(middlewares=[problem_middleware])
    admin = web.Application(middlewares=[static_token_auth])
    admin.router.add_get("/tenants/{tenant}/connectors", list_connectors)
    app[SERVICES] = services
    app.add_subapp("/admin/v1", admin)
    return app


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def timed(call: Callable[[], Awaitable[int]], expect: int) -> float:
    started = time.perf_counter()
    status = await call()
    elapsed = (time.perf_counter() - started) * 1000
    if status != expect:
        raise SystemExit(f"expected HTTP {expect}, got {status}")
    return elapsed


async def sign_in_rounds(
    base: str, path: str, admins: list[Admin], rounds: int, clock: Clock
) -> tuple[list[float], list[float], list[float]]:
    """Latencies in ms: sign-ins at once, /healthz at the same concurrency, and sign-ins
    one at a time (a quarter of the admins per round)."""
    signins: list[float] = []
    health: list[float] = []
    alone: list[float] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    headers = {"Origin": base}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        def sign_in(admin: Admin, code: str) -> Callable[[], Awaitable[int]]:
            async def call() -> int:
                form = {"email": admin.email, "password": PASSWORD, "code": code}
                async with session.post(base + path, data=form, allow_redirects=False) as r:
                    await r.read()
                    return r.status

            return call

        async def healthz() -> int:
            async with session.get(base + "/healthz") as r:
                await r.read()
                return r.status

        for _ in range(rounds):
            clock.offset += timedelta(seconds=30)
            now = clock()
            codes = [pyotp.TOTP(a.secret).at(now) for a in admins]
            signins += await asyncio.gather(
                *(timed(sign_in(a, c), 303) for a, c in zip(admins, codes, strict=True))
            )
            health += await asyncio.gather(*(timed(healthz, 200) for _ in admins))
            clock.offset += timedelta(seconds=30)
            now = clock()
            for admin in admins[: max(1, len(admins) // 4)]:
                code = pyotp.TOTP(admin.secret).at(now)
                alone.append(await timed(sign_in(admin, code), 303))
    return signins, health, alone


async def api_calls(
    token_url: str, token: str, static_url: str, health_url: str, calls: int
) -> dict[str, list[float]]:
    """Sequential calls in interleaved batches: API token, static token, /healthz (ms)."""
    out: dict[str, list[float]] = {"token": [], "static": [], "healthz": []}
    async with aiohttp.ClientSession() as session:

        def get(url: str, bearer: str | None) -> Callable[[], Awaitable[int]]:
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}

            async def call() -> int:
                async with session.get(url, headers=headers) as r:
                    await r.read()
                    return r.status

            return call

        plan = [
            ("token", get(token_url, token)),
            ("static", get(static_url, STATIC_TOKEN)),
            ("healthz", get(health_url, None)),
        ]
        for _, call in plan:  # warm up connections and caches
            for _ in range(20):
                await timed(call, 200)
        batch = 100
        for _ in range(max(1, calls // batch)):
            for name, call in plan:
                for _ in range(batch):
                    out[name].append(await timed(call, 200))
    return out


def in_process(services: Services, token: str, n: int = 5000) -> tuple[float, float]:
    """Microseconds per check: `Accounts.bearer` (API token) and `same_secret` (static)."""
    bearer = services.accounts.bearer
    started = time.perf_counter()
    for _ in range(n):
        if bearer(token) is None:
            raise SystemExit("the API token did not authenticate")
    token_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        same_secret(STATIC_TOKEN, STATIC_TOKEN)
    static_us = (time.perf_counter() - started) / n * 1e6
    return token_us, static_us


def row(label: str, values: list[float], base: float | None = None) -> str:
    p50, p99 = statistics.median(values), percentile(values, 99)
    ratio = f"{p50 / base:6.1f}x" if base else "      -"
    return f"  {label:<44} {len(values):>6} {p50:>9.2f} {p99:>9.2f} {ratio}"


def report_sign_in(
    path: str,
    concurrency: int,
    rounds: int,
    signins: list[float],
    health: list[float],
    alone: list[float],
) -> bool:
    health_p50 = statistics.median(health)
    where = "console form" if path.startswith("/console") else "bench route, Accounts.sign_in"
    print(f"\n(a) sign-in + TOTP, {concurrency} concurrent x {rounds} rounds ({where})")
    print(f"  {'':<44} {'calls':>6} {'p50 ms':>9} {'p99 ms':>9} {'p50/base':>7}")
    print(row(f"GET /healthz, {concurrency} concurrent (baseline)", health))
    print(row(f"POST {path}, one at a time", alone, health_p50))
    print(row(f"POST {path}, {concurrency} concurrent", signins, health_p50))
    cores = os.cpu_count() or 1
    floor = concurrency * statistics.median(alone) / cores
    print(
        f"  floor for the last of {concurrency} at once on {cores} cores "
        f"({concurrency} x one-at-a-time p50 / cores): {floor:.0f} ms"
    )
    p99 = percentile(signins, 99)
    ok_a = p99 < SIGN_IN_TARGET_MS
    verdict = "meets" if ok_a else "MISSES"
    print(f"  sign-in p99 {p99:.1f} ms: {verdict} the target of < {SIGN_IN_TARGET_MS:.0f} ms")
    return ok_a


async def main(concurrency: int, rounds: int, calls: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        clock = Clock()
        services = Services.open(
            Settings(
                data_dir=Path(tmp),
                admin_token="bench-bootstrap-token-0123456789abcdef",
                master_key=base64.b64encode(bytes(32)).decode(),
                scheduler=False,
            ),
            clock=clock,
        )
        runners: list[web.AppRunner] = []
        try:
            t0 = time.perf_counter()
            admins = prepare(services, concurrency)
            print(
                f"enrolled {concurrency} admins in {time.perf_counter() - t0:.1f}s "
                f"(argon2id t={passwords.HASHER.time_cost}, "
                f"m={passwords.HASHER.memory_cost} KiB, p={passwords.HASHER.parallelism})"
            )
            app = make_app(services)
            path = sign_in_path(app)
            runner, base = await serve(app)
            runners.append(runner)
            static_runner, static_base = await serve(static_app(services))
            runners.append(static_runner)

            signins, health, alone = await sign_in_rounds(base, path, admins, rounds, clock)
            ok_a = report_sign_in(path, concurrency, rounds, signins, health, alone)
            clock.offset += timedelta(seconds=30)
            principal = services.accounts.sign_in(
                email=admins[0].email,
                password=PASSWORD,
                code=pyotp.TOTP(admins[0].secret).at(clock()),
                client="127.0.0.1",
            ).principal
            _, token = services.accounts.create_token(
                principal, name="bench", role="admin", expires_at=clock() + timedelta(days=30)
            )
            connectors = f"/admin/v1/tenants/{TENANT}/connectors"
            timings = await api_calls(
                base + connectors, token, static_base + connectors, base + "/healthz", calls
            )
            token_us, static_us = in_process(services, token)
        finally:
            for r in runners:
                await r.cleanup()
            services.close()

    static_p50 = statistics.median(timings["static"])
    added = statistics.median(timings["token"]) - static_p50
    print(f"\n(b) admin API call, sequential, {len(timings['token'])} calls each")
    print(f"  {'':<44} {'calls':>6} {'p50 ms':>9} {'p99 ms':>9} {'p50/base':>7}")
    print(row("GET /healthz (no auth, floor)", timings["healthz"]))
    print(row("GET connectors, static token (baseline)", timings["static"]))
    print(row("GET connectors, API token", timings["token"], static_p50))
    print(
        f"  in process: Accounts.bearer {token_us:.1f} us per call vs same_secret "
        f"{static_us:.2f} us"
    )
    ok_b = added < ADDED_COST_TARGET_MS
    verdict = "meets" if ok_b else "MISSES"
    print(
        f"  added cost of the API token per call (p50 difference) {added:.3f} ms: {verdict} "
        f"the target of < {ADDED_COST_TARGET_MS:.0f} ms"
    )
    return 0 if ok_a and ok_b else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.concurrency, args.rounds, args.calls)))
