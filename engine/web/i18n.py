"""The admin page's words, in English and Brazilian Portuguese, from one catalogue.

The catalogue is the YAML files of ``catalogue/`` (one per view, so that views grow apart): each
key maps to its text in every language, ``{name}`` placeholders filled at render time. A key
missing a language is an error at load (tests load it), never a blank on the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import yaml

LANGUAGES = ("en", "pt-BR")
CATALOGUE = Path(__file__).parent / "catalogue"


class CatalogueError(ValueError):
    pass


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, str]]:
    """``view.key`` -> language -> text, from every file of the catalogue."""
    entries: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for path in sorted(CATALOGUE.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, texts in data.items():
            if not isinstance(key, str):  # YAML reads a bare on, off, yes, no as a boolean
                problems.append(f"{path.name}: {key!r}: a key must be text (quote it)")
                continue
            full = f"{path.stem}.{key}"
            if not isinstance(texts, Mapping):
                problems.append(f"{path.name}: {key}: expected a text per language")
                continue
            missing = [lang for lang in LANGUAGES if not isinstance(texts.get(lang), str) or not texts[lang]]
            extra = sorted(set(texts) - set(LANGUAGES))
            if missing or extra:
                problems.append(
                    f"{path.name}: {key}: missing {missing}" if missing else f"{path.name}: {key}: {extra}?"
                )
            entries[full] = {lang: str(texts.get(lang, "")) for lang in LANGUAGES}
    if problems:
        raise CatalogueError("; ".join(problems))
    return entries


def negotiate(accept_language: str | None, default: str) -> str:
    """The first language of ``Accept-Language`` (by q) the page speaks; ``default`` otherwise."""
    choices: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            choices.append((-quality, index, tag.strip().lower()))
    for _, _, tag in sorted(choices):
        if tag.startswith("pt"):
            return "pt-BR"
        if tag.startswith("en"):
            return "en"
    return default


def chosen(value: str | None) -> str | None:
    """A language the page speaks, as written by a person or a cookie (``pt``, ``pt-br``, ``en``), or None."""
    lowered = (value or "").strip().lower()
    if lowered.startswith("pt"):
        return "pt-BR"
    if lowered.startswith("en"):
        return "en"
    return None


class Translator:
    """``t("overview.title")`` in one language; ``t("overview.oldest", age="3 d")`` fills placeholders."""

    def __init__(self, language: str):
        self.language = language
        self._texts = catalogue()

    def __call__(self, key: str, **values: object) -> str:
        try:
            text = self._texts[key][self.language]
        except KeyError:
            raise CatalogueError(f"no text for {key!r} in the admin page's catalogue") from None
        return text.format(**values) if values else text
