"""Fixtures for the console: real services on SQLite, the gateway's whole app on a real test
server, people enrolled through the accounts service, and a small form-driving client.

Time is a `Clock` the test can move: a TOTP code is good once, so a test that signs in and
then steps up moves the clock to the next 30-second step before computing the next code,
instead of sleeping.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp.test_utils import TestClient

from gateway.accounts.principal import Principal
from gateway.api.app import make_app
from gateway.ledger.record import Acting
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.tenancy import create_tenant
from tests.api.conftest import ADMIN_TOKEN, MASTER_KEY

PASSWORD = "correct horse battery staple 42"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Clock:
    """Real time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def next_code_step(self) -> None:
        self.offset += timedelta(seconds=30)


@dataclass
class Person:
    email: str
    password: str
    secret: str
    account_id: str
    role: str
    tenant: str | None
    clock: Clock = field(repr=False)
    recovery: list[str] = field(default_factory=list, repr=False)

    def code(self) -> str:
        """A code of a time step no earlier code used (moves the shared clock on)."""
        self.clock.next_code_step()
        return pyotp.TOTP(self.secret).at(self.clock())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(tmp_path: Path, clock: Clock) -> Iterator[Services]:
    s = Services.open(
        Settings(
            data_dir=tmp_path,
            admin_token=ADMIN_TOKEN,
            master_key=MASTER_KEY,
            scheduler=False,
            allow_private_sources=True,
        ),
        clock=clock,
    )
    yield s
    s.close()


def enrol(
    services: Services,
    clock: Clock,
    *,
    role: str,
    tenant: str | None,
    email: str,
    name: str = "Test Person",
) -> Person:
    """An enrolled account made through the accounts service (as `sluis demo` makes them);
    the console's own invitation pages are tested apart."""
    secret = pyotp.random_base32()
    account, codes = services.accounts.create_active_account(
        tenant=tenant, role=role, email=email, name=name, password=PASSWORD, totp_secret=secret
    )
    return Person(email, PASSWORD, secret, account.id, role, tenant, clock, codes)


def make_tenants(services: Services, clock: Clock, *tenants: str) -> None:
    operator = Principal("acc_0000000000000001", "operator", None, "test")
    for tenant in tenants:
        by = Acting(operator.actor(), services.ledger(tenant))
        create_tenant(services.store, services.box, tenant, f"{tenant.title()} BV", clock(), by=by)


@dataclass
class World:
    """A tenant `acme` with an admin, an auditor and a viewer; `globex` with an admin."""

    operator: Person
    admin: Person
    auditor: Person
    viewer: Person
    other_admin: Person


@pytest.fixture
def world(services: Services, clock: Clock) -> World:
    make_tenants(services, clock, "acme", "globex")
    return World(
        operator=enrol(services, clock, role="operator", tenant=None, email="op@sluis.example"),
        admin=enrol(services, clock, role="admin", tenant="acme", email="admin@acme.example"),
        auditor=enrol(services, clock, role="auditor", tenant="acme", email="dpo@acme.example"),
        viewer=enrol(services, clock, role="viewer", tenant="acme", email="view@acme.example"),
        other_admin=enrol(
            services, clock, role="admin", tenant="globex", email="admin@globex.example"
        ),
    )


@dataclass
class Page:
    status: int
    html: str
    headers: Any

    @property
    def csrf(self) -> str:
        found = CSRF.search(self.html)
        assert found, "no CSRF field on the page"
        return found.group(1)


@dataclass
class Console:
    client: TestClient[Any, Any]

    async def get(self, path: str, **kw: Any) -> Page:
        resp = await self.client.get(path, allow_redirects=True, **kw)
        return Page(resp.status, await resp.text(), resp.headers)

    async def post(self, path: str, data: dict[str, str], **kw: Any) -> Page:
        resp = await self.client.post(path, data=data, allow_redirects=True, **kw)
        return Page(resp.status, await resp.text(), resp.headers)

    async def raw_post(self, path: str, data: dict[str, str], **kw: Any) -> Any:
        return await self.client.post(path, data=data, allow_redirects=False, **kw)

    async def sign_in(self, person: Person) -> Page:
        return await self.post(
            "/console/sign-in",
            {"email": person.email, "password": person.password, "code": person.code()},
        )

    async def submit(self, page_path: str, action: str, data: dict[str, str]) -> Page:
        """Open the page that holds a form, then post the form with that page's CSRF token."""
        page = await self.get(page_path)
        assert page.status == 200, (page_path, page.status)
        return await self.post(action, {"csrf": page.csrf, **data})


@pytest.fixture
async def console(aiohttp_client: Any, services: Services) -> Console:
    return Console(await aiohttp_client(make_app(services)))


class Labels(HTMLParser):
    """Every visible form control and whether a `<label for>` names it; the `<html lang>`."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[str] = []
        self.labelled: set[str] = set()
        self.lang: str | None = None
        self.skip_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag == "a" and a.get("href") == "#main":
            self.skip_link = True
        if tag == "label" and a.get("for"):
            self.labelled.add(str(a["for"]))
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            self.controls.append(str(a.get("id") or "(no id)"))


def check_accessible(html: str) -> None:
    parser = Labels()
    parser.feed(html)
    assert parser.lang in ("en", "nl")
    assert parser.skip_link
    unlabelled = [c for c in parser.controls if c not in parser.labelled]
    assert not unlabelled, unlabelled
