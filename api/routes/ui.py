"""The dashboard at /ui: static files, no data (every data call sends the bearer token), a strict CSP."""
from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse, RedirectResponse

from ..errors import NotFound

router = APIRouter(include_in_schema=False)
STATIC = FsPath(__file__).resolve().parent.parent / "ui" / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> FileResponse:
    path = STATIC / name
    if path.suffix not in TYPES or not path.is_file():
        raise NotFound(f"No dashboard file {name!r}.")
    return FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)


@router.get("/ui")
async def index() -> FileResponse:
    return _file("index.html")


@router.get("/ui/")
async def index_slash() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=308)


@router.get("/ui/{name}")
async def asset(name: Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,40}\.(js|css|svg)$")]) -> FileResponse:
    return _file(name)
