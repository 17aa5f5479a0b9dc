"""The console sub-application, mounted at `/console` by `gateway.api.app.make_app`.

Server-rendered pages (Jinja2, autoescaped) over the same domain functions and the same
role policy as the admin API; one stylesheet and one small script, both served from the
package, so there is no front-end build and every core flow works without JavaScript.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import jinja2
from aiohttp import web

from gateway.console import (
    views_auth,
    views_authorise,
    views_connect,
    views_connectors,
    views_idp,
    views_oidc,
    views_operator,
    views_preview,
    views_runs,
    views_tenant,
    views_tokens,
)
from gateway.console.kit import RESUMES, SERVICES, TASKS, TEMPLATES, console_errors, page_headers
from gateway.console.resume import Resumes
from gateway.runtime.services import Services

HERE: Final = Path(__file__).resolve().parent


def templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def make_console_app(services: Services) -> web.Application:
    app = web.Application(middlewares=[console_errors])
    app[SERVICES] = services
    app[TEMPLATES] = templates()
    app[RESUMES] = Resumes()
    app[TASKS] = set()
    app.cleanup_ctx.append(views_runs.console_syncs)
    app.on_response_prepare.append(page_headers)
    router = app.router
    views_auth.add_routes(router)
    views_oidc.add_routes(router)
    views_connectors.add_routes(router)
    views_connect.add_routes(router)
    views_preview.add_routes(router)
    views_authorise.add_routes(router)
    views_runs.add_routes(router)
    views_tenant.add_routes(router)
    views_idp.add_routes(router)
    views_tokens.add_routes(router)
    views_operator.add_routes(router)
    router.add_static("/static", HERE / "static", append_version=False)
    return app
