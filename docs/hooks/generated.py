"""MkDocs hook (mkdocs.yml ``hooks:``): fill the generated parts of the pages at build time.

A page marks where a generated part goes with a line ``<!-- generated: NAME -->``; the build
replaces it with the markdown the generator NAME writes from the code. The pages themselves stay
hand-written (and readable on GitHub, where the marker is invisible); what they generate cannot
drift from the registry, the schema or the OpenAPI. An unknown NAME fails the build.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import api_reference
import rules_reference

MARKER = re.compile(r"^<!-- generated: ([a-z_]+) -->$", re.MULTILINE)

GENERATORS: dict[str, Callable[[], str]] = {
    "actions": rules_reference.actions_markdown,
    "rules_schema": rules_reference.schema_markdown,
    "admin_api": api_reference.api_markdown,
}


def fill(markdown: str) -> str:
    def generated(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated part {name!r}: one of {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(generated, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs calls it with these names
    return fill(markdown)
