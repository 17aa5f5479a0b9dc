"""Form input kept across a sign-in: a session that ends mid-form loses nothing the user
typed, except what must never be kept.

When a form arrives without a live session, its harmless fields are kept here under a
random id (for `TTL_SECONDS`, used once), the user signs in, and the form's page shows them
again. Passwords, authenticator and recovery codes, credentials and the CSRF token are never
kept. Held in the process's memory, bounded: a restart or another replica forgets them, and
the user types the form again, which is the worst case.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

TTL_SECONDS: Final = 15 * 60
MAX_KEPT: Final = 1000
MAX_FIELD_CHARS: Final = 64 * 1024

#: Field names never kept: secrets, codes, and the CSRF token.
SECRET_FIELDS: Final = frozenset({"csrf", "password", "password2", "code", "token", "secret"})


def is_secret(name: str) -> bool:
    return name in SECRET_FIELDS or name.startswith("credential")


class Resumes:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, tuple[float, str, dict[str, str]]] = OrderedDict()

    def keep(self, path: str, fields: Mapping[str, str]) -> str:
        """Keep the harmless fields of a form for the page at `path`; returns the id."""
        kept = {k: v[:MAX_FIELD_CHARS] for k, v in fields.items() if not is_secret(k)}
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._expire()
            self._kept[token] = (self._clock() + TTL_SECONDS, path, kept)
            while len(self._kept) > MAX_KEPT:
                self._kept.popitem(last=False)
        return token

    def take(self, token: str, path: str) -> dict[str, str]:
        """The fields kept for `path` under `token` (once), or nothing."""
        with self._lock:
            self._expire()
            found = self._kept.get(token)
            if found is None or found[1] != path:
                return {}
            del self._kept[token]
            return found[2]

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, (until, _, _) in self._kept.items() if until <= now]:
            del self._kept[token]
