"""Swagger UI and ReDoc served entirely by the service, so the docs work without network.

FastAPI's default pages load their JavaScript and CSS from a CDN, which leaves them blank on an
offline, self-hosted install. The assets come instead from the `fastapi-offline` package (a
plain PyPI dependency, so `uv sync` installs them): Swagger UI's `swagger-ui-bundle.js` and
`swagger-ui.css`, ReDoc's `redoc.standalone.js` and a favicon, mounted under `ASSETS_URL`.
None of these pages or assets is part of the OpenAPI schema.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/api/docs"
REDOC_URL = "/api/redoc"
OAUTH2_REDIRECT_URL = "/api/docs/oauth2-redirect"
ASSETS_URL = "/api/docs-assets"
ASSETS_DIRECTORY = Path(str(files("fastapi_offline") / "static"))

SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"

SWAGGER_UI_PARAMETERS: dict[str, object] = {"validatorUrl": None}
"""On top of FastAPI's defaults: no validity badge fetched from the public validator service."""


def _asset(request: Request, name: str) -> str:
    """The URL of one asset, below the proxy's `root_path` when there is one."""
    return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"


def _openapi_url(request: Request) -> str:
    """The schema's URL as the browser reaches it."""
    return f"{request.scope.get('root_path', '')}{request.app.openapi_url}"


def build_docs_router(title: str) -> APIRouter:
    """The two documentation pages, Swagger UI's OAuth2 redirect page, and `GET /`."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def home(request: Request) -> RedirectResponse:
        """Send a visitor of the bare address to the interactive documentation."""
        return RedirectResponse(f"{request.scope.get('root_path', '')}{DOCS_URL}")

    @router.get(DOCS_URL)
    async def swagger_ui(request: Request) -> HTMLResponse:
        """Swagger UI; its "Authorize" button uses the OAuth2 password flow of the schema."""
        return get_swagger_ui_html(
            openapi_url=_openapi_url(request),
            title=f"{title} - Swagger UI",
            swagger_js_url=_asset(request, SWAGGER_JS),
            swagger_css_url=_asset(request, SWAGGER_CSS),
            swagger_favicon_url=_asset(request, FAVICON),
            oauth2_redirect_url=f"{request.scope.get('root_path', '')}{OAUTH2_REDIRECT_URL}",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @router.get(OAUTH2_REDIRECT_URL)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        """The page Swagger UI's OAuth2 flows return to (self-contained, no assets)."""
        return get_swagger_ui_oauth2_redirect_html()

    @router.get(REDOC_URL)
    async def redoc(request: Request) -> HTMLResponse:
        """ReDoc, without the Google Fonts that FastAPI's default page loads."""
        return get_redoc_html(
            openapi_url=_openapi_url(request),
            title=f"{title} - ReDoc",
            redoc_js_url=_asset(request, REDOC_JS),
            redoc_favicon_url=_asset(request, FAVICON),
            with_google_fonts=False,
        )

    return router


def install_docs(app: FastAPI) -> None:
    """Serve the documentation pages and their assets; `app` must not have FastAPI's own docs
    (`docs_url=None, redoc_url=None`)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIRECTORY), name="docs-assets")
    app.include_router(build_docs_router(app.title))
