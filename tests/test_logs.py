"""The gateway's log setup: libraries that say too much at INFO are held to warnings."""

from __future__ import annotations

import logging

from gateway.runtime.logs import configure_logging


def test_asyncssh_logs_warnings_only_even_at_debug() -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        configure_logging("json", "DEBUG")
        ssh = logging.getLogger("asyncssh")
        assert not ssh.isEnabledFor(logging.INFO)
        assert ssh.isEnabledFor(logging.WARNING)
        assert logging.getLogger("sluis").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])
        logging.getLogger("asyncssh").setLevel(logging.NOTSET)
