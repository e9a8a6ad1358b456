"""``engine new-product``: a commented product file that already passes ``engine check``.

The lifecycle decides which ManyChat flows a product needs; the scaffold lists each of them
(as ``none`` until the admin pastes the flow's namespace), adds the product's tag to the
catalog, and writes a rule-test case for a first purchase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.rules.action_types import PlannedStep
from engine.rules.actions import ACTIONS, FLOW_ACTIONS, MANYCHAT, the_action
from engine.rules.loader import RULE_TESTS_DIR
from engine.rules.model import NO_FLOW, Rules, flow_name, is_optional
from engine.sources import DEFAULT_SOURCE, SOURCES

KEY_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_FLOW_TAGS = re.compile(r"^(?P<indent>\s+)tags:\s*\[(?P<items>[^\]]*)\](?P<rest>.*)$")


class ScaffoldRefused(Exception):
    """The product cannot be written (bad key, existing file, id already claimed ...)."""


@dataclass
class Scaffold:
    product_file: Path
    test_file: Path | None
    flows: dict[str, list[str]]  # flow -> transitions that send it
    optional_flows: set[str] = field(default_factory=set)
    tag: str | None = None
    catalog_note: str = ""


def flows_for_kind(rules: Rules, kind: str) -> tuple[dict[str, list[str]], set[str]]:
    """Every flow the transitions of ``kind`` send, with the transitions; and which are optional everywhere."""
    users: dict[str, list[str]] = {}
    required: set[str] = set()
    for rule in rules.transitions:
        if not rule.applies_to_kind(kind):
            continue
        for step in rule.steps:
            if step.action not in FLOW_ACTIONS:
                continue
            flow = flow_name(step.args)
            names = users.setdefault(flow, [])
            if rule.name not in names:
                names.append(rule.name)
            if not is_optional(step):
                required.add(flow)
    return users, set(users) - required


def write_product(
    rules: Rules,
    rules_dir: Path,
    key: str,
    hotmart_id: str,
    *,
    subscription: bool,
    name: str | None = None,
    roles: tuple[str, ...] = (),
    tag: str | None = None,
    other_ids: dict[str, str] | None = None,
) -> Scaffold:
    """``other_ids``: the product's id on other sources (``{"kiwify": "a1b2c3"}``): the file then
    claims its ids under ``sources:``."""
    other_ids = {name: value for name, value in (other_ids or {}).items() if value}
    if not KEY_RE.match(key):
        raise ScaffoldRefused(
            f"product key {key!r}: use lowercase letters, digits, _ and - , starting with a letter, e.g. mentoria"
        )
    if not re.fullmatch(r"[0-9]+", hotmart_id) or int(hotmart_id) < 1:
        raise ScaffoldRefused(f"--hotmart-id {hotmart_id!r}: a Hotmart product id is digits only, e.g. 4444444")
    for role in roles:
        if not re.fullmatch(r"[0-9]{15,21}", role):
            raise ScaffoldRefused(
                f"--role {role!r}: a Discord id is 15 to 21 digits (right-click the role > Copy Role ID)"
            )
    if key in rules.products:
        raise ScaffoldRefused(f"product {key!r} already exists ({rules.products[key].file})")
    claimed = rules.product_for(DEFAULT_SOURCE.name, hotmart_id)
    if claimed is not None:
        raise ScaffoldRefused(
            f"Hotmart product {hotmart_id} is already claimed by product {claimed.key!r} ({claimed.file})"
        )
    for source_name, product_id in other_ids.items():
        source = SOURCES[source_name]
        if not re.fullmatch(source.product_id_schema["pattern"].strip("^$"), product_id):
            raise ScaffoldRefused(f"--{source_name}-id {product_id!r}: {source.product_id_hint}")
        claimed = rules.product_for(source_name, product_id)
        if claimed is not None:
            raise ScaffoldRefused(
                f"{source.title} product {product_id} is already claimed by product {claimed.key!r} ({claimed.file})"
            )
    product_file = rules_dir / "products" / f"{key}.yaml"
    if product_file.exists():
        raise ScaffoldRefused(f"{product_file} already exists")

    kind = "subscription" if subscription else "one_time"
    flows, optional = flows_for_kind(rules, kind)
    scaffold = Scaffold(product_file, None, flows, optional)
    tag = tag if tag is not None else f"aluno-{key}"
    if tag and tag not in rules.manychat_tags:
        scaffold.catalog_note = _add_catalog_tag(rules_dir, tag)
        if not scaffold.catalog_note.startswith("added"):
            tag = ""  # not in the catalog: the product must not name it (check would fail)
    scaffold.tag = tag or None
    product_file.parent.mkdir(parents=True, exist_ok=True)
    product_file.write_text(
        _product_text(
            key,
            name or key.replace("-", " ").replace("_", " ").title(),
            kind,
            hotmart_id,
            roles,
            tag,
            flows,
            optional,
            other_ids,
        ),
        encoding="utf-8",
    )
    return scaffold


def write_rule_test(rules: Rules, rules_dir: Path, key: str) -> Path | None:
    """A rule-test case for a first purchase of ``key``, expecting what the rules do today.

    ``rules`` are the rules with the new product; nothing is written when a first purchase
    is ignored or a test file for the key exists.
    """
    from engine.authoring.rule_tests import DEFAULT_NOW
    from engine.lifecycle.planner import Facts, Planner

    product = rules.products[key]
    plan = Planner(rules).plan("PURCHASE_APPROVED", {}, product, rules.initial, Facts(now=DEFAULT_NOW))
    path = rules_dir / RULE_TESTS_DIR / f"{key}.yaml"
    if plan.ignored or path.exists():
        return None
    steps = [expected for step in plan.steps for expected in _first_purchase_expects(step)]
    steps.sort(key=lambda expected: ":" in expected)  # bare names first, then each tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "\n".join(
            [
                "# yaml-language-server: $schema=../../engine/authoring/rule_tests.schema.json",
                f"# Written by `engine new-product {key}`: extend it as the product gets its own rules.",
                "tests:",
                f"  - name: a first purchase of {key}",
                f"    product: {key}",
                "    events:",
                "      - event: PURCHASE_APPROVED",
                "        expect:",
                f"          transition: {plan.transition}",
                f"          state: {plan.to_state}",
                f"          steps: [{', '.join(steps)}]",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return path


def _id_lines(hotmart_id: str, other_ids: dict[str, str]) -> list[str]:
    """The product's ids under ``sources:``, one line per platform that sells it (the older
    ``hotmart_product_ids`` form is deprecated: a new file never uses it)."""
    ids = {DEFAULT_SOURCE.name: hotmart_id, **other_ids}
    quoted = {name: value if value.isdigit() else f'"{value}"' for name, value in ids.items()}
    return [
        _commented("  sources:", "the product's ids on each platform that sells it"),
        *(f"    {name}: [{value}]" for name, value in quoted.items()),
    ]


def _product_text(
    key: str,
    name: str,
    kind: str,
    hotmart_id: str,
    roles: tuple[str, ...],
    tag: str | None,
    flows: dict[str, list[str]],
    optional: set[str],
    other_ids: dict[str, str],
) -> str:
    roles_text = ", ".join(f'"{r}"' for r in roles)
    roles_note = "" if roles else 'TODO: Discord role ids IN QUOTES, e.g. ["1180000000000000001"]'
    tag_note = "in catalog.yaml (manychat: tags:)" if tag else "tag names from catalog.yaml"
    lines = [
        "# yaml-language-server: $schema=../../config.schema.json",
        "#",
        f"# Product {key!r}, written by `engine new-product`. Fill in the TODOs, then run `engine check`",
        "# and `engine dry-run` with one of this product's Hotmart payloads.",
        "product:",
        _commented(f"  key: {key}", "the membership's product key (keep it once students exist)"),
        _commented(f"  name: {_yaml_text(name)}", "TODO: the name students and admins read"),
        _commented(f"  kind: {kind}", "one_time or subscription: transitions can be limited to a kind"),
        *_id_lines(hotmart_id, other_ids),
        _commented("  # offer_codes: [abc123]", "optional: only purchases of these offers belong here"),
        _commented("  access:", "what an active membership grants; bare steps use these"),
        _commented(f"    discord_roles: [{roles_text}]", roles_note),
        _commented(f"    manychat_tags: [{tag or ''}]", tag_note),
        _commented("    classes: []", "class keys from catalog.yaml (classes:), e.g. [curso-2026]"),
        "  # Logical flow name -> ManyChat flow namespace (ManyChat: open the flow, copy its ns).",
        "  # `none`: this product sends no such flow (the step is recorded as skipped).",
        "  flows:",
    ]
    for flow, users in flows.items():
        note = "optional" if flow in optional else "TODO: flow ns"
        lines.append(_commented(f"    {flow}: {NO_FLOW}", f"{note}; sent by {', '.join(users)}"))
    if not flows:
        lines[-1] = "  flows: {}"
    return "\n".join(lines) + "\n"


def _commented(code: str, comment: str) -> str:
    return f"{code.ljust(33)} # {comment}" if comment else code


def _yaml_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _add_catalog_tag(rules_dir: Path, tag: str) -> str:
    """Add ``tag`` to the catalog's ``manychat: tags: [...]``; the outcome in words."""
    catalogs = [p for p in sorted(rules_dir.glob("*.y*ml")) if re.search(r"^catalog\s*:", p.read_text("utf-8"), re.M)]
    if not catalogs:
        return f"no catalog file: add a catalog with manychat: tags: [{tag}] to use the tag"
    path = catalogs[0]
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for index, line in enumerate(lines):
        match = _FLOW_TAGS.match(line.rstrip("\n"))
        if match:
            items = [i.strip() for i in match["items"].split(",") if i.strip()]
            lines[index] = f"{match['indent']}tags: [{', '.join([*items, tag])}]{match['rest']}\n"
            path.write_text("".join(lines), encoding="utf-8")
            return f"added tag {tag!r} to {path.name} (manychat: tags:)"
    return f"could not find `tags: [...]` in {path.name}: add {tag!r} there by hand, then list it in the product"


__all__ = ["Scaffold", "ScaffoldRefused", "flows_for_kind", "write_product", "write_rule_test"]


_ISSUES_THE_CODE = the_action(main_param="code")


def _first_purchase_expects(step: PlannedStep) -> list[str]:
    """What the scaffold's first-purchase case expects of a step: the code, and the access it
    grants (ManyChat tags one by one, by name)."""
    action = ACTIONS[step.action]
    if step.action == _ISSUES_THE_CODE:
        return [step.action]
    if action.ledger is None or not action.ledger.grants:
        return []
    if action.executor == MANYCHAT:
        return [f"{step.action}: {name}" for name in step.params[action.main_param]]
    return [step.action]
