"""A door with a bound: the projector, but for at most `limit` raw records of a page.

A preview shows an admin what a mapping makes of a few records; whatever a source sends
beyond them is never even looked at. Used in the gateway's process and in a source worker
(`gateway.sync.source_worker`), which is why it lives beside the projector.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any, Final

from connectors.base import ProjectedPage
from gateway.minimise.projector import Projector

_END: Final = object()


class BoundedDoor:
    """`Projector.project_page` for the first `limit` records; `read` says how many were
    read, `more` whether the page held more."""

    def __init__(self, projector: Projector, limit: int) -> None:
        self.projector = projector
        self.limit = limit
        self.read = 0
        self.more = False

    @property
    def source_fields(self) -> frozenset[str]:
        return self.projector.source_fields

    @property
    def records_seen(self) -> int:
        return self.projector.records_seen

    @property
    def unseen_source_fields(self) -> list[str]:
        return self.projector.unseen_source_fields

    def project_page(self, records: Iterable[Any]) -> ProjectedPage:
        rest = iter(records)
        taken = list(itertools.islice(rest, self.limit))
        self.read = len(taken)
        self.more = next(rest, _END) is not _END
        return self.projector.project_page(taken)
