"""What access a membership should hold, derived from the rules alone ("the rules are the desired state").

No YAML declares "state X grants Y": the lifecycle's transitions already say it. Starting from
the initial state with nothing granted, every transition that may fire moves a membership from
(state, linked) to (state', linked') and adds or removes resources (the action registry says
which: ``Action.ledger``). Folding every path gives, per (state, linked):

- ``must``: what every path into that state holds — reconcile grants it when missing;
- ``may``: what some path holds — outside it, what the engine granted is revoked.

Conditions other than ``discord_linked`` (a renewal, a date already past) are unknown here, so
every transition they guard may fire: the result covers every history the rules allow.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from engine.rules.actions import ACTIONS
from engine.rules.model import Condition, Product, Rules, TransitionRule, as_list

# One resource the engine grants: (ledger kind, id), e.g. ("discord_role", "1180000000000000001").
Resource = tuple[str, str]
_KIND_OF_PRODUCT_RESOURCE = {"discord_roles": "discord_role", "manychat_tags": "manychat_tag", "classes": "class"}
LINK_EVENT = "DISCORD_LINKED"


@dataclass(frozen=True)
class Access:
    must: frozenset[Resource] = frozenset()
    may: frozenset[Resource] = frozenset()
    reachable: bool = True  # False: no history the rules allow leads here (e.g. an imported state)


@dataclass
class ProductAccess:
    """The derived access of one product's memberships, by (state, linked)."""

    product: Product
    by_node: dict[tuple[str, bool], Access] = field(default_factory=dict)

    def of(self, state: str, linked: bool) -> Access:
        found = self.by_node.get((state, linked))
        if found is not None:
            return found
        # A membership the rules cannot explain (imported, or a state only reached otherwise):
        # nothing is certain, anything of the product may be held.
        return Access(frozenset(), product_resources(self.product), reachable=False)


def link_moves_on(rules: Rules, product: Product, state: str) -> bool:
    """Would a Discord link still move a membership of ``product`` in ``state`` on? Some transition
    on DISCORD_LINKED starts from it (conditions aside): not from refunded or churned, say."""
    return any(
        LINK_EVENT in rule.events
        and ("*" in rule.sources or state in rule.sources)
        and rule.applies_to_kind(product.kind)
        for rule in rules.transitions
    )


def product_resources(product: Product) -> frozenset[Resource]:
    return frozenset(
        (kind, str(resource))
        for attribute, kind in _KIND_OF_PRODUCT_RESOURCE.items()
        for resource in getattr(product, attribute)
    )


def derive(rules: Rules) -> dict[str, ProductAccess]:
    """Per product key, the access every (state, linked) should hold under ``rules``."""
    return {key: derive_product(rules, product) for key, product in rules.products.items()}


def derive_product(rules: Rules, product: Product) -> ProductAccess:
    """:func:`derive` for one product."""
    edges = _edges(rules, product)
    must: dict[tuple[str, bool], frozenset[Resource]] = {}
    may: dict[tuple[str, bool], frozenset[Resource]] = {}
    queue: deque[tuple[str, bool]] = deque()
    for linked in (False, True):  # a student may buy before or after linking Discord
        node = (rules.initial, linked)
        must[node] = may[node] = frozenset()
        queue.append(node)
    while queue:
        node = queue.popleft()
        for target, adds, removes in edges.get(node, ()):
            new_must = (must[node] - removes) | adds
            new_may = (may[node] - removes) | adds
            if target not in must:
                must[target], may[target] = new_must, new_may
                queue.append(target)
                continue
            merged_must, merged_may = must[target] & new_must, may[target] | new_may
            if (merged_must, merged_may) != (must[target], may[target]):
                must[target], may[target] = merged_must, merged_may
                queue.append(target)
    return ProductAccess(product, {node: Access(must[node], may[node]) for node in must})


def _edges(
    rules: Rules, product: Product
) -> dict[tuple[str, bool], list[tuple[tuple[str, bool], frozenset, frozenset]]]:
    """(state, linked) -> [(target node, resources added, resources removed)] for every transition that may fire."""
    events = sorted({event for rule in rules.transitions for event in rule.events})
    edges: dict[tuple[str, bool], list] = {}
    for state in rules.states:
        for linked in (False, True):
            for event in events:
                facts_linked = linked or event == LINK_EVENT
                for rule in _may_fire(rules, product, event, state, _Facts(facts_linked, was_linked=linked)):
                    target = (rule.dest or state, facts_linked)
                    adds, removes = _effects(rule, product, facts_linked)
                    edges.setdefault((state, linked), []).append((target, adds, removes))
    return edges


@dataclass(frozen=True)
class _Facts:
    linked: bool  # at the decision (DISCORD_LINKED brings the account)
    was_linked: bool  # before the event


def _may_fire(rules: Rules, product: Product, event: str, state: str, facts: _Facts) -> list[TransitionRule]:
    """The transitions for ``event`` from ``state`` that may fire, in file order, up to one that surely does."""
    fired = []
    for rule in rules.transitions:
        if event not in rule.events or not ("*" in rule.sources or state in rule.sources):
            continue
        if not rule.applies_to_kind(product.kind):
            continue
        guard = _guard(rules, rule, facts)
        if guard is False:
            continue
        fired.append(rule)
        if guard is True:
            break
    return fired


def _guard(rules: Rules, rule: TransitionRule, facts: _Facts) -> bool | None:
    values = []
    if rule.if_ is not None:
        values.append(_evaluate(rules, rule.if_, facts))
    if rule.unless is not None:
        value = _evaluate(rules, rule.unless, facts)
        values.append(None if value is None else not value)
    return _all(values)


def _evaluate(rules: Rules, cond: Condition, facts: _Facts) -> bool | None:
    """Three-valued: True, False, or None when it depends on what the event brings."""
    if cond.kind == "all":
        return _all([_evaluate(rules, c, facts) for c in cond.children])
    if cond.kind == "any":
        return _any([_evaluate(rules, c, facts) for c in cond.children])
    if cond.kind == "not":
        value = _evaluate(rules, cond.children[0], facts)
        return None if value is None else not value
    if cond.kind == "predicate" and cond.name in rules.predicates:
        return _evaluate(rules, rules.predicates[cond.name], facts)
    if cond.kind == "predicate" and cond.name == "discord_linked":
        return facts.linked
    if cond.kind == "predicate" and cond.name == "discord_account_changed" and not facts.was_linked:
        return False  # no account before: nothing changed
    return None


def _all(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return True if all(v is True for v in values) else None


def _any(values: list[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    return False if all(v is False for v in values) else None


def _effects(rule: TransitionRule, product: Product, linked: bool) -> tuple[frozenset, frozenset]:
    adds: set[Resource] = set()
    removes: set[Resource] = set()
    for spec in rule.steps:
        action = ACTIONS.get(spec.action)
        if action is None or action.ledger is None:
            continue
        if isinstance(spec.args, dict) and spec.args.get("account") == "previous":
            continue  # relink: the roles move between accounts, the student keeps them
        resources = _resources(spec.args, action.product_resource, product)
        kind = action.ledger.kind
        if kind == "discord_role" and not linked:
            continue  # no account to hold a role
        (adds if action.ledger.grants else removes).update((kind, r) for r in resources)
    return frozenset(adds), frozenset(removes - adds)


def _resources(args, product_resource: str | None, product: Product) -> list[str]:
    if args is None:
        return [str(r) for r in getattr(product, product_resource or "", ())]
    if isinstance(args, dict):
        explicit = args.get("roles")
        return [str(r) for r in explicit] if explicit else [str(r) for r in getattr(product, product_resource or "")]
    return [str(r) for r in as_list(args)]
