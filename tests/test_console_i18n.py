"""The console's catalogues and templates: same keys in every language, every key used exists, pages render."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.console.i18n import LANGUAGES, Translator, catalogue, choose, placeholders

CONSOLE = Path(__file__).resolve().parents[1] / "api" / "console"
# t("key"), t('key'), C.T("key"), C.label("prefix", ...) and "prefix." ~ x in the templates and scripts.
USED = re.compile(r"""\b(?:t|C\.T)\(\s*["']([a-z_]+\.[a-z_.]+)["']""")


def test_every_catalogue_has_the_same_keys_and_placeholders() -> None:
    """One catalogue per language, with exactly the same keys and the same {placeholders} per string."""
    en = catalogue("en")
    for lang in LANGUAGES:
        other = catalogue(lang)
        assert set(other) == set(en), f"{lang}: missing {set(en) - set(other)}, extra {set(other) - set(en)}"
        for key, text in other.items():
            assert text.strip(), f"{lang}: {key} is empty"
            assert placeholders(text) == placeholders(en[key]), f"{lang}: {key} has other placeholders"


def test_no_string_is_left_untranslated() -> None:
    """Chinese strings carry Chinese, except names that are the same in both (the language names)."""
    zh, en = catalogue("zh"), catalogue("en")
    same = {k for k in zh if zh[k] == en[k]}
    assert same <= {"lang.zh", "lang.en"}, same


def test_every_key_used_in_templates_and_scripts_exists() -> None:
    """A key typed in a template or a script that is not in the catalogue would show raw to a user."""
    keys = set(catalogue("en"))
    used: set[str] = set()
    for path in [*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("static/*.js")]:
        used |= set(USED.findall(path.read_text(encoding="utf-8")))
    assert used, "the pattern found no key at all"
    prefixes = {u for u in used if u.endswith(".")}  # t("report.cat." ~ c): a family of keys
    missing = sorted((used - prefixes) - keys)
    assert not missing, f"keys used but missing from the catalogues: {missing}"
    for p in prefixes:
        assert any(k.startswith(p) for k in keys), f"no key starts with {p!r}"


def test_missing_key_is_an_error_and_values_fill_placeholders() -> None:
    """The template helper never prints a raw key: a missing one fails the render."""
    t = Translator("en")
    assert t("map.devices", online=3, total=4) == "Devices 3/4 online"
    with pytest.raises(KeyError, match=r"no\.such"):
        t("no.such.key")
    with pytest.raises(ValueError, match="no catalogue"):
        Translator("fr")


@pytest.mark.parametrize(("cookie", "site", "expected"), [
    (None, "zh", "zh"), ("en", "zh", "en"), ("zh", "en", "zh"), ("fr", "en", "en"), ("<script>", "zh", "zh"),
    (None, "xx", "zh"),
])
def test_language_choice(cookie: str | None, site: str, expected: str) -> None:
    """The visitor's remembered choice wins; anything else falls back to the site's language."""
    assert choose(cookie, site) == expected
