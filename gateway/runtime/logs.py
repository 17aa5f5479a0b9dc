"""Process logging for the commands that run the gateway: plain text or one JSON object per
line (`log_format`), at a chosen level (`log_level`), on stderr.

JSON lines carry `ts`, `level`, `logger` and `message`, plus any `extra={...}` fields a call
adds (ids and counts only: tenant, connector, run id, error kind). Tracebacks, where a log
call asks for one, go into `exc` as text rather than across lines.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final

import orjson

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: Libraries whose INFO lines name more than the gateway's own logs may: asyncssh logs each
#: connection's account, peer and the files opened (an SFTP source's export names). Their
#: warnings and errors still come through.
QUIETER: Final = ("asyncssh",)
#: Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """Send the root logger to stderr in `log_format` at `level` (replacing its handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIETER:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
