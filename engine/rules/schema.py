"""Rewrite config.schema.json's action part from the registry: ``python -m engine.rules.schema``."""

from __future__ import annotations

import json

from engine.rules.actions import with_actions
from engine.rules.loader import SCHEMA_PATH


def main() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    SCHEMA_PATH.write_text(json.dumps(with_actions(schema), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    main()
