"""SCIM push of 10,000 users to a local SCIM server, against that server's own rate.

Run from the repository root:

    .venv/bin/python bench/bench_scim_push.py [--users 10000] [--batch 100] [--in-flight 4]

The server is `scim2-server` (python-scim's, in memory) in its own process on 127.0.0.1,
as in the tests. Three rows, each in a fresh server:

* baselines: the same User bodies POSTed straight at the server, then a PATCH of each
  user's title, with the same number of requests in flight: what the server takes, with
  nothing of ours in the way;
* first push: `ScimSender` with `subject.upserted` batches as the push worker hands them
  over (each new person is looked up by `externalId`, then created: two requests);
* update push: the same people again with a new title (the sender remembers their ids:
  one PATCH each).

Figures are users/s and the ratio to the baseline of the same request (a first push
makes two requests per person, so 0.5x is the server's own limit); the ledger, the store
and the worker's lease are not in this bench (the webhook bench times the worker end to
end).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from scim2_models import Context  # noqa: E402

from gateway.delivery.push import Batch  # noqa: E402
from gateway.delivery.scim_push import (  # noqa: E402
    ScimSender,
    _patch_body,
    _patch_ops,
    user_of,
)
from tests.scim_server import scim_server  # noqa: E402


def _people(n: int, title: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "subject.upserted",
            "subject_id": f"{i:032x}",
            "data": {
                "first_name": f"First{i}",
                "last_name": f"Last{i}",
                "email": f"person{i}@example.nl",
                "job_title": title,
            },
        }
        for i in range(1, n + 1)
    ]


def _batches(events: list[dict[str, Any]], size: int) -> list[Batch]:
    out = []
    for start in range(0, len(events), size):
        part = events[start : start + size]
        body = orjson.dumps({"type": "subject.events", "data": {"events": part}})
        out.append(Batch("bench", "dst", f"msg{start}", body, tuple(range(len(part)))))
    return out


async def _baseline(url: str, token: str, events: list[dict[str, Any]], in_flight: int) -> float:
    bodies = [
        orjson.dumps(
            user_of(e["subject_id"], e["data"]).model_dump(
                scim_ctx=Context.RESOURCE_CREATION_REQUEST
            )
        )
        for e in events
    ]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    gate = asyncio.Semaphore(in_flight)
    async with aiohttp.ClientSession() as session:

        async def post(body: bytes) -> None:
            async with gate, session.post(url + "/Users", data=body, headers=headers) as resp:
                assert resp.status == 201, resp.status
                await resp.read()

        start = time.perf_counter()
        await asyncio.gather(*(post(b) for b in bodies))
        return len(bodies) / (time.perf_counter() - start)


async def _baseline_patch(
    url: str, token: str, events: list[dict[str, Any]], in_flight: int
) -> float:
    """PATCH straight at the server: each user there gets the body the sender sends for
    its update (every attribute Sluis manages), as many in flight."""
    count = len(events)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    gate = asyncio.Semaphore(in_flight)
    async with aiohttp.ClientSession() as session:
        ids: list[tuple[str, str]] = []
        for start in range(1, count + 1, 100):
            params = {"startIndex": str(start), "count": "100"}
            async with session.get(url + "/Users", params=params, headers=headers) as resp:
                found = (await resp.json(content_type=None))["Resources"]
                ids += [(u["id"], u["externalId"]) for u in found]
        bodies = {
            e["subject_id"]: orjson.dumps(
                _patch_body(_patch_ops(user_of(e["subject_id"], e["data"])))
            )
            for e in events
        }

        async def patch(user_id: str, body: bytes) -> None:
            async with (
                gate,
                session.patch(f"{url}/Users/{user_id}", data=body, headers=headers) as resp,
            ):
                assert resp.status in (200, 204), resp.status
                await resp.read()

        start_at = time.perf_counter()
        await asyncio.gather(*(patch(i, bodies[ext]) for i, ext in ids))
        return len(ids) / (time.perf_counter() - start_at)


async def _push(sender: ScimSender, batches: list[Batch], count: int) -> float:
    start = time.perf_counter()
    for batch in batches:
        outcome = await sender.send(batch)
        assert outcome.kind == "delivered", outcome
    return count / (time.perf_counter() - start)


async def run(users: int, batch: int, in_flight: int) -> None:
    first = _people(users, "Teacher")
    again = _people(users, "Mentor")
    with scim_server() as srv:
        base = await _baseline(srv.base_url, srv.token, first, in_flight)
        base_patch = await _baseline_patch(srv.base_url, srv.token, again, in_flight)
    with scim_server() as srv:
        async with aiohttp.ClientSession() as session:
            sender = ScimSender(
                srv.base_url, srv.token, session=session, allow_private=True, in_flight=in_flight
            )
            created = await _push(sender, _batches(first, batch), users)
            updated = await _push(sender, _batches(again, batch), users)
    print(f"SCIM push, {users:,} users, batches of {batch}, {in_flight} in flight")
    print(f"{'case':34} {'users/s':>9} {'vs baseline':>12}")
    print(f"{'baseline: POST /Users directly':34} {base:9,.0f} {'1.00x':>12}")
    print(f"{'first push (lookup + create)':34} {created:9,.0f} {created / base:11.2f}x")
    print(f"{'baseline: PATCH /Users/id directly':34} {base_patch:9,.0f} {'1.00x':>12}")
    print(f"{'update push (PATCH)':34} {updated:9,.0f} {updated / base_patch:11.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--in-flight", type=int, default=4)
    args = ap.parse_args()
    asyncio.run(run(args.users, args.batch, args.in_flight))


if __name__ == "__main__":
    main()
