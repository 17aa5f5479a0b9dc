"""`sluis serve`: the gateway as a long-running service (admin API, feed, metrics, scheduler)."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.api.app import AccessLogger, make_app
from gateway.keys.master import SecretError
from gateway.runtime.config import ConfigError, load_settings
from gateway.runtime.services import ADMIN_TOKEN_FILE, Services
from gateway.sync.scheduler import resume_context, scheduler_context


class _QuietProtocolErrors(logging.Filter):
    """aiohttp logs a malformed HTTP request with a traceback that quotes the offending
    bytes; a request nobody could parse deserves one plain line, and its bytes (whatever a
    client sent) stay out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            record.msg, record.args = "rejected a malformed HTTP request", ()
            record.exc_info, record.exc_text = None, None
        return True


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiohttp.server").addFilter(_QuietProtocolErrors())
    try:
        settings = load_settings(args.config)
        services = Services.open(settings)
    except (ConfigError, SecretError) as exc:
        print(f"sluis serve: {exc}", file=sys.stderr)
        return 2
    if not settings.admin_token:
        print(
            "sluis serve: no admin_token configured (SLUIS_ADMIN_TOKEN): the admin token is "
            f"in {settings.data_dir / ADMIN_TOKEN_FILE}",
            file=sys.stderr,
        )
    app = make_app(services)
    # The scheduler resumes runs a previous process left half-way; without it, resume them
    # once (a run left "running" would block its connector for good).
    app.cleanup_ctx.append(
        scheduler_context(services) if settings.scheduler else resume_context(services)
    )
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            print=None,
            access_log_class=AccessLogger,
        )
    finally:
        services.close()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the gateway (admin API, feed, metrics, scheduler)",
        description="Run the gateway. Settings come from --config and SLUIS_* variables.",
    )
    parser.add_argument("--config", metavar="FILE", help="sluis.toml (optional)")
    parser.set_defaults(run=_run)
