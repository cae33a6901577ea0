"""The console's string catalogues (one JSON file per language) and the choice of language per request."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

CATALOG_DIR = Path(__file__).with_name("catalog")
LANGUAGES: tuple[str, ...] = ("zh", "en")
LANG_COOKIE = "commhub_lang"
HTML_LANG = {"zh": "zh-CN", "en": "en"}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@cache
def catalogue(lang: str) -> Mapping[str, str]:
    """Every string of one language, by key (read once)."""
    if lang not in LANGUAGES:
        raise ValueError(f"no catalogue for language {lang!r}; have {', '.join(LANGUAGES)}")
    data = json.loads((CATALOG_DIR / f"{lang}.json").read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{CATALOG_DIR / f'{lang}.json'}: must map string keys to string values")
    return data


def placeholders(text: str) -> set[str]:
    """The {name} placeholders in one string."""
    return set(_PLACEHOLDER.findall(text))


def choose(cookie: str | None, site_default: str) -> str:
    """The language the visitor picked (cookie), else the site's default."""
    if cookie in LANGUAGES:
        return str(cookie)
    return site_default if site_default in LANGUAGES else LANGUAGES[0]


class Translator:
    """t(key, **values) for templates; a missing key is an error, never shown raw to a user."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.strings = catalogue(lang)

    def __call__(self, key: str, **values: object) -> str:
        try:
            text = self.strings[key]
        except KeyError:
            raise KeyError(f"string {key!r} is missing from the {self.lang} catalogue") from None
        return text.format(**values) if values else text
