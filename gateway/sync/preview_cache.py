"""Where preview results wait for the admin who asked: in memory, briefly, per tenant.

A preview holds personal data (the minimised sample people), so it is never written to the
store or a log: it lives in this process for `TTL` (ten minutes, time to read it and decide)
and at most `MAX_ENTRIES` are kept, the oldest evicted first, so a burst of previews cannot
grow the gateway's memory. A result is found only by its unguessable id *and* its tenant:
another tenant's id is as absent as an expired one.

Several gateway replicas do not share this cache; a preview is read back from the replica
that made it (or made again, which is cheap and recorded again).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Final

from gateway.sync.preview import Preview

TTL: Final = timedelta(minutes=10)
MAX_ENTRIES: Final = 256


class PreviewCache:
    """Previews by id, each until `made_at + ttl`; the oldest go first when full."""

    def __init__(self, *, ttl: timedelta = TTL, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Preview] = OrderedDict()
        self._lock = threading.Lock()

    def expires_at(self, preview: Preview) -> datetime:
        return preview.made_at + self.ttl

    def put(self, preview: Preview, now: datetime) -> None:
        """Keep `preview` (dropping expired ones, then the oldest while over the bound)."""
        with self._lock:
            self._drop_expired(now)
            self._entries[preview.id] = preview
            self._entries.move_to_end(preview.id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get(self, tenant: str, preview_id: str, now: datetime) -> Preview | None:
        """The preview if it is `tenant`'s and not expired; None otherwise (the caller
        cannot tell which, and neither can whoever guessed the id)."""
        with self._lock:
            found = self._entries.get(preview_id)
            if found is None:
                return None
            if now >= self.expires_at(found):
                del self._entries[preview_id]
                return None
            return found if found.tenant == tenant else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _drop_expired(self, now: datetime) -> None:
        expired = [k for k, p in self._entries.items() if now >= self.expires_at(p)]
        for key in expired:
            del self._entries[key]
