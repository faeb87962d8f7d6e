"""``/ui``: the dashboard's page and its static files, served by the API itself.

No build step and no third-party assets: ``static/`` holds plain ES modules, CSS and the
HTML shell. Only files present in ``static/`` when the process starts are served (a fixed
table, so no request path reaches the file system), each with a Content-Security-Policy
that allows nothing but this origin: the page cannot load or send anything elsewhere.
The pages hold no data; the browser fetches everything from ``/v1`` with the user's key,
so these routes need no key themselves.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from app.problems import not_found

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidate (ETag): a new release is picked up at once
}


def _catalogue(root: Path) -> dict[str, Path]:
    """Every servable file under ``root`` by its URL path (``js/api.js``)."""
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in MEDIA_TYPES
    }


FILES = _catalogue(STATIC)
router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)


def _serve(name: str) -> Response:
    path = FILES.get(name)
    if path is None:
        raise not_found("file", name)
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


@router.api_route("", methods=["GET", "HEAD"])
def index_without_slash() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.api_route("/", methods=["GET", "HEAD"])
def index() -> Response:
    """The single page; its views live in the URL's fragment (``/ui/#/jobs``)."""
    return _serve("index.html")


@router.api_route("/{name:path}", methods=["GET", "HEAD"])
def static_file(name: str) -> Response:
    return _serve(name)
