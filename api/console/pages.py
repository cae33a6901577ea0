"""The console's pages: server-rendered shells in the visitor's language; their scripts call the JSON API."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.console import plan
from api.console.i18n import HTML_LANG, LANG_COOKIE, LANGUAGES, Translator, catalogue, choose
from api.deps import ConfigDep
from commhub.config import Config

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_PREFIX = "/console/static"
_STATIC_NAME = re.compile(r"^[a-z0-9_-]{1,40}\.(js|css)$")
_MEDIA = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
ALL = ("security_staff", "grid_worker", "property", "police_liaison", "admin")
STAFF = ("security_staff", "grid_worker", "property")


@dataclass(frozen=True)
class Page:
    """One page: its path, its template, who may open it, and whether it shows in the menu."""

    name: str
    path: str
    roles: tuple[str, ...]
    menu: bool = True
    template: str = ""


PAGES: tuple[Page, ...] = (
    Page("board", "/board", ALL),
    Page("review", "/review", ("police_liaison",)),
    Page("map", "/map", ALL),
    Page("charts", "/charts", ALL),
    Page("devices", "/devices", ALL),
    Page("report", "/report", STAFF),
    Page("terminal", "/terminal", STAFF, template="report.html"),
    Page("patrol", "/patrol", ("security_staff", "grid_worker")),
    Page("silences", "/silences", ("security_staff", "admin")),
    Page("accounts", "/accounts", ("admin",)),
    Page("audit", "/audit", ("admin",)),
)
LANDING = {"police_liaison": "/review", "admin": "/accounts"}  # everyone else lands on the board

router = APIRouter(include_in_schema=False)
_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(("html",)),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _render(request: Request, cfg: Config, template: str, page: str, lang_cookie: str | None,
            roles: tuple[str, ...] = ALL, **extra: Any) -> HTMLResponse:
    site = cfg.community.site
    lang = choose(lang_cookie, site.language)
    t = Translator(lang)
    context = {
        "t": t, "lang": lang, "html_lang": HTML_LANG[lang], "languages": LANGUAGES, "page": page,
        "site_name": site.name or site.id, "site_id": site.id, "tz": site.timezone, "roles": " ".join(roles),
        "menu": [p for p in PAGES if p.menu],
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "landing": json.dumps(LANDING), "static": STATIC_PREFIX,
        # </script> cannot occur in the catalogue's JSON once '<' is escaped, so it is safe inside <script>.
        "catalogue_json": json.dumps(catalogue(lang), ensure_ascii=False).replace("<", "\\u003c"),
        "grids": [{"id": g.id, "name": g.name or g.id, "buildings": [{"id": b.id, "name": b.name or b.id}
                                                                     for b in g.buildings]}
                  for g in cfg.community.grids],
        **extra,
    }
    html = _env.get_template(template).render(context)
    return HTMLResponse(html, headers={"Cache-Control": "no-store", "Content-Language": HTML_LANG[lang]})


LangCookie = Annotated[str | None, Cookie(alias=LANG_COOKIE, max_length=8)]


@router.get("/", response_class=HTMLResponse)
def landing(request: Request, cfg: ConfigDep, lang: LangCookie = None) -> HTMLResponse:
    """Sends a logged-in visitor to their role's landing page, anyone else to the login page."""
    return _render(request, cfg, "landing.html", "landing", lang)


@router.get("/login", response_class=HTMLResponse)
def login(request: Request, cfg: ConfigDep, lang: LangCookie = None) -> HTMLResponse:
    """The login form (OAuth2 password flow against /api/v1/auth/token)."""
    return _render(request, cfg, "login.html", "login", lang)


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_detail(request: Request, cfg: ConfigDep, alert_id: Annotated[int, PathParam(ge=1, le=2**62)],
                 lang: LangCookie = None) -> HTMLResponse:
    """One alert: timeline, events, thresholds, route, snapshots, comments and the role's actions."""
    return _render(request, cfg, "alert.html", "alert", lang, alert_id=alert_id)


@router.get("/map", response_class=HTMLResponse)
def community_map(request: Request, cfg: ConfigDep, lang: LangCookie = None) -> HTMLResponse:
    """The community plan, drawn from the community model."""
    svg = plan.render(cfg.community, Translator(choose(lang, cfg.community.site.language))("map.common"))
    return _render(request, cfg, "map.html", "map", lang, plan_svg=svg)


def _page_route(p: Page) -> None:
    def show(request: Request, cfg: ConfigDep, lang: LangCookie = None) -> HTMLResponse:
        return _render(request, cfg, p.template or f"{p.name}.html", p.name, lang, roles=p.roles)

    show.__doc__ = f"The {p.name} page."
    router.add_api_route(p.path, show, methods=["GET"], response_class=HTMLResponse, name=f"console_{p.name}")


for _p in PAGES:
    if _p.name != "map":
        _page_route(_p)


@router.get("/console/lang/{lang}")
def set_language(lang: Annotated[str, PathParam(pattern="^(zh|en)$")], back: str = "/") -> Response:
    """Remember the language for a year (a cookie), then go back to the page."""
    target = back if back.startswith("/") and not back.startswith("//") else "/"
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
    return resp


@router.get(STATIC_PREFIX + "/{name}")
def static(name: Annotated[str, PathParam(max_length=50)]) -> Response:
    """The console's own scripts and styles (no outside request, no build step)."""
    m = _STATIC_NAME.match(name)
    path = STATIC / name
    if not m or not path.is_file():
        return Response("no such file", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type=_MEDIA[m.group(1)], headers={"Cache-Control": "no-cache"})
