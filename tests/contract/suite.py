"""Helpers of the contract suite: drive a connector page by page like the sync engine does.

`sync` follows cursors until the last page and keeps what a run produces: Subjects,
rejection reasons, counts, the watermark, and the text of every page as the engine would
see it, so that tests can scan that text for values that must never get past the door.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Connector, PageRequest, SyncMode

#: A runaway guard: no suite emulator needs more pages than this.
MAX_PAGES = 200


@dataclass
class Run:
    subjects: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    fetched: int = 0
    pages: int = 0
    #: The last watermark a page reported (connectors report the run's maximum so far).
    watermark: str | None = None
    #: `repr` of every MinimisedPage, for leak scans.
    trace: list[str] = field(default_factory=list)

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {s["subject_id"]: s for s in self.subjects}

    def active_ids(self) -> set[str]:
        return {s["subject_id"] for s in self.subjects if s["active"]}


async def sync(
    connector: Connector,
    mode: SyncMode = SyncMode.FULL,
    *,
    since: str | None = None,
    before_page: Callable[[int], None] | None = None,
) -> Run:
    """One run to the last page; `before_page(n)` runs before page n (0-based) is fetched."""
    run = Run()
    cursor: str | None = None
    seen: set[str | None] = set()
    while True:
        assert run.pages < MAX_PAGES, "the connector never reached a last page"
        if before_page is not None:
            before_page(run.pages)
        page = await connector.fetch_page(PageRequest(mode=mode, cursor=cursor, since=since))
        run.pages += 1
        run.fetched += page.fetched
        run.subjects.extend(page.subjects)
        run.rejected.extend(reason for _, reason in page.rejected)
        run.trace.append(repr(page))
        if page.watermark is not None:
            run.watermark = page.watermark
        if page.last:
            return run
        assert page.next_cursor not in seen, "the connector returned a cursor twice"
        seen.add(page.next_cursor)
        cursor = page.next_cursor


def leaked(values: Iterable[str], *texts: str) -> list[str]:
    """The sensitive values found in any of `texts` (sorted; empty means clean)."""
    blob = "\n".join(texts)
    return sorted(v for v in values if v and v in blob)
