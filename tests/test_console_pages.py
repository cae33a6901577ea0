"""The console's server side without services: every page renders in both languages; assets; redirects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.console.i18n import LANG_COOKIE, catalogue
from api.console.pages import PAGES, router
from commhub.config import Config, load_community

SAMPLE = Path(__file__).resolve().parents[1] / "configs" / "community" / "sample.yaml"
PATHS = ["/", "/login", "/alerts/7", *[p.path for p in PAGES]]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """The console router alone, on an app whose services hold only the config (pages read nothing else)."""
    app = FastAPI()
    app.state.services = SimpleNamespace(cfg=Config(community=load_community(SAMPLE)))
    app.include_router(router)
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("path", PATHS)
def test_every_page_renders_in_both_languages(client: TestClient, path: str) -> None:
    """Chinese by default for the sample community, English by cookie; the page's own strings are embedded."""
    client.cookies.clear()
    zh = client.get(path)
    assert zh.status_code == 200 and '<html lang="zh-CN">' in zh.text
    assert catalogue("zh")["nav.board"] in zh.text
    client.cookies.set(LANG_COOKIE, "en")
    en = client.get(path)
    assert en.status_code == 200 and '<html lang="en">' in en.text and en.headers["content-language"] == "en"
    assert catalogue("en")["nav.board"] in en.text
    # No outside host: every script, style and link stays on this origin.
    assert not re.search(r"""(src|href)=["'](https?:)?//""", en.text)
    client.cookies.clear()


def test_language_switch_remembers_and_refuses_to_leave_the_site(client: TestClient) -> None:
    """The switch sets a year-long cookie and goes back; an off-site 'back' goes home instead (no open redirect)."""
    r = client.get("/console/lang/en", params={"back": "/board?grid=g1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/board?grid=g1"
    assert f"{LANG_COOKIE}=en" in r.headers["set-cookie"] and "Max-Age=31536000" in r.headers["set-cookie"]
    for evil in ("//evil.example/x", "https://evil.example/", "javascript:alert(1)"):
        r = client.get("/console/lang/zh", params={"back": evil}, follow_redirects=False)
        assert r.headers["location"] == "/", evil
    assert client.get("/console/lang/fr", follow_redirects=False).status_code == 422
    client.cookies.clear()


def test_a_bad_language_cookie_falls_back_to_the_site_language(client: TestClient) -> None:
    """A cookie the console did not write cannot break a page."""
    client.cookies.set(LANG_COOKIE, "<x>")
    r = client.get("/board")
    assert r.status_code == 200 and '<html lang="zh-CN">' in r.text
    client.cookies.clear()


def test_static_assets_and_nothing_else(client: TestClient) -> None:
    """Scripts and styles are served with their types; other names, and paths out of the folder, are 404."""
    js = client.get("/console/static/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/console/static/console.css").headers["content-type"].startswith("text/css")
    for bad in ("../pages.py", "..%2Fpages.py", "nothing.js", "console.py", "CONSOLE.JS"):
        assert client.get(f"/console/static/{bad}").status_code == 404, bad


def test_alert_page_takes_only_an_alert_number(client: TestClient) -> None:
    """The alert id is validated before anything renders."""
    assert client.get("/alerts/0").status_code == 422
    assert client.get("/alerts/abc").status_code == 422
