"""Every word of the admin page comes from its catalogue, in English and Portuguese."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from engine.web import i18n
from engine.web.i18n import CatalogueError, Translator, catalogue, negotiate

WEB = Path(i18n.__file__).parent
TEMPLATES = sorted((WEB / "templates").rglob("*.html"))
KEY_USE = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_0-9.]+)["']""")


def _used_keys() -> set[str]:
    used = set()
    for path in [*TEMPLATES, *WEB.rglob("*.py")]:
        used.update(KEY_USE.findall(path.read_text(encoding="utf-8")))
    return used


def test_every_key_the_page_uses_is_in_the_catalogue_in_both_languages():
    texts = catalogue()
    used = {key for key in _used_keys() if not key.endswith("_")}  # a prefix completed at run time:
    used |= {f"common.language_{lang.replace('-', '_')}" for lang in i18n.LANGUAGES}  # the language menu
    missing = sorted(key for key in used if key not in texts)
    assert not missing, f"not in engine/web/catalogue: {missing}"
    for key, by_language in texts.items():
        assert all(by_language[lang].strip() for lang in i18n.LANGUAGES), key


def test_a_key_missing_a_language_fails_the_load(tmp_path, monkeypatch):
    (tmp_path / "view.yaml").write_text(yaml.safe_dump({"title": {"en": "Title"}}), encoding="utf-8")
    monkeypatch.setattr(i18n, "CATALOGUE", tmp_path)
    catalogue.cache_clear()
    try:
        with pytest.raises(CatalogueError, match="title: missing \\['pt-BR'\\]"):
            catalogue()
    finally:
        monkeypatch.undo()
        catalogue.cache_clear()


def test_a_key_yaml_reads_as_a_boolean_fails_the_load(tmp_path, monkeypatch):
    (tmp_path / "view.yaml").write_text("on: {en: 'On', pt-BR: 'Ligado'}\n", encoding="utf-8")
    monkeypatch.setattr(i18n, "CATALOGUE", tmp_path)
    catalogue.cache_clear()
    try:
        with pytest.raises(CatalogueError, match="True: a key must be text"):
            catalogue()
    finally:
        monkeypatch.undo()
        catalogue.cache_clear()


def test_an_unknown_key_is_an_error_not_a_blank():
    with pytest.raises(CatalogueError, match="nav.nowhere"):
        Translator("en")("nav.nowhere")


def test_templates_hold_no_words_of_their_own():
    """Text between tags, once the template's expressions are gone, is punctuation at most."""
    for path in TEMPLATES:
        source = path.read_text(encoding="utf-8")
        source = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", " ", source, flags=re.DOTALL)
        text = re.sub(r"<[^>]*>", " ", source)
        words = re.findall(r"[A-Za-zÀ-ÿ]{2,}", text)
        assert not words, f"{path.name}: words outside the catalogue: {words[:10]}"


def test_placeholders_are_the_same_in_both_languages():
    for key, by_language in catalogue().items():
        names = {lang: set(re.findall(r"\{(\w+)\}", text)) for lang, text in by_language.items()}
        assert names["en"] == names["pt-BR"], key


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("pt-BR,pt;q=0.9,en;q=0.8", "pt-BR"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR,pt;q=0.5,en;q=0.4", "pt-BR"),
        ("en;q=0.2,pt;q=0.8", "pt-BR"),
        ("de", "en"),
        ("", "en"),
        ("pt;q=0", "en"),
        ("en;q=abc,pt", "pt-BR"),
    ],
)
def test_the_browsers_language_is_negotiated_by_quality(header, expected):
    assert negotiate(header, "en") == expected
