"""The webhook sender against a real receiver on 127.0.0.1: what each answer means, that
redirects are not followed, that private addresses are refused unless allowed, that two
secrets sign during a rotation, and that a receiver's words reach no log."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from gateway.delivery.destinations import new_secret
from gateway.delivery.push import Batch
from gateway.delivery.webhook import Signer, WebhookSender, public_session, retry_after

BATCH = Batch("acme", "dst_0000000000000001", "msg_1", b'{"type":"subject.events"}', (1,))


async def _server(aiohttp_server: Any, answers: dict[str, web.Response]) -> tuple[str, list[str]]:
    reached: list[str] = []

    async def take(request: web.Request) -> web.Response:
        reached.append(request.path)
        return answers[request.path]

    app = web.Application()
    app.router.add_route("*", "/{name}", take)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("/")), reached


@pytest.mark.parametrize(
    ("status", "headers", "kind", "reason", "wait"),
    [
        (204, {}, "delivered", "status-204", None),
        (503, {"Retry-After": "7"}, "retry", "status-503", 7.0),
        (429, {}, "retry", "status-429", None),
        (408, {}, "retry", "status-408", None),
        (502, {"Retry-After": "7"}, "retry", "status-502", None),  # only 429 and 503 ask
        (410, {}, "rejected", "status-410", None),
        (302, {"Location": "/elsewhere"}, "rejected", "redirect-302", None),
    ],
)
async def test_what_each_answer_means(
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture, status: int,
    headers: dict[str, str], kind: str, reason: str, wait: float | None,
) -> None:  # fmt: skip
    answer = web.Response(status=status, headers=headers, text="the receiver's own words")
    base, reached = await _server(aiohttp_server, {"/hooks": answer, "/elsewhere": answer})
    caplog.set_level(logging.DEBUG)
    async with public_session(allow_private=True) as session:
        sender = WebhookSender(base + "hooks", Signer([new_secret()]), session=session,
                               allow_private=True)  # fmt: skip
        outcome = await sender.send(BATCH)
    assert (outcome.kind, outcome.reason, outcome.retry_after) == (kind, reason, wait)
    assert reached == ["/hooks"]  # a redirect is never followed
    assert "own words" not in caplog.text


async def test_private_addresses_are_refused_unless_allowed(aiohttp_server: Any) -> None:
    base, reached = await _server(aiohttp_server, {"/hooks": web.Response(status=204)})
    async with public_session(allow_private=False) as session:
        sender = WebhookSender(base + "hooks", Signer([new_secret()]), session=session)
        outcome = await sender.send(BATCH)
    assert (outcome.kind, outcome.reason) == ("rejected", "refused-address")
    assert reached == []


async def test_a_rotation_signs_under_both_secrets(aiohttp_server: Any) -> None:
    seen: list[tuple[bytes, dict[str, str]]] = []

    async def take(request: web.Request) -> web.Response:
        seen.append((await request.read(), dict(request.headers)))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks", take)
    server = await aiohttp_server(app, host="127.0.0.1")
    new, old = new_secret(), new_secret()
    async with public_session(allow_private=True) as session:
        sender = WebhookSender(str(server.make_url("/hooks")), Signer([new, old]),
                               session=session, allow_private=True)  # fmt: skip
        assert (await sender.send(BATCH)).kind == "delivered"
    body, headers = seen[0]
    assert headers["webhook-id"] == "msg_1"
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == {"type": "subject.events"}


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert retry_after("120", now) == 120.0
    assert retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90.0
    assert retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0.0
    assert retry_after("999999", now) == 3600.0
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None
