"""The changes a platform shows that the engine never heard of: dated, written as webhooks, and
weighed by what the rules would do with them now.

Which change is news (:func:`findings`):

* a granting change (an approval: a new buyer, a renewal) the engine has no event of;
* any other change (a refund, a chargeback, a dispute, a late payment, a cancellation) the engine
  has no event of, for a buyer it holds a membership of that product for (a refund of a purchase
  made before the engine existed is no one's business here);
* but not a dated change older than a membership an import placed and no platform event moved
  since: the import read the platform as it was then.

Dating: a change the platform dates (an approval, a late charge) takes that date. One it gives
no date of (a refund, a cancellation) comes 1 ms after the newest date known of its purchase:
the platform's dates of the sale, the engine's events of its transaction, the membership's newest
platform event, the approvals found with it; never later than now. So it follows what it changes
in the membership's history, and a membership that moved on since is converged by the ordinary
ordering (docs/architecture/index.md, "Per student, in order").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from engine.catchup.known import Known, MembershipView
from engine.catchup.observe import Observed
from engine.catchup.report import Effect, Finding, Report
from engine.lifecycle.inputs import from_source
from engine.lifecycle.planner import Planner
from engine.pipeline.facts import event_facts
from engine.pipeline.ledger import RESOURCES
from engine.rules.model import Product, Rules
from engine.sources import Source
from engine.sources.base import ApiChange

_AFTER = timedelta(milliseconds=1)
# Besides the source's revoking events, the change that ends access when the rules act on it (at
# once, or at the end of the paid period): what the blast-radius guard counts.
_CANCELLATION = "SUBSCRIPTION_CANCELLATION"


def findings(
    source: Source, rules: Rules, planner: Planner, observed: Observed, known: Known, report: Report, now: datetime
) -> None:
    """Add to ``report`` the changes of ``observed`` that are news, in creation order."""
    api = source.api
    assert api is not None
    granting = source.granting_events
    news: list[tuple[ApiChange, Product, MembershipView | None]] = []
    for change in observed.changes:
        if known.knows(change, granting):
            continue
        product = _product(source, rules, change, known)
        if product is None:
            report.passed_over["of a product or offer no rule claims"] += 1
            continue
        membership = known.memberships.get((change.email, product.key))
        if change.event_type not in granting and membership is None:
            report.passed_over["of buyers with no membership of the product here"] += 1
            continue
        if _imported_after(change, membership):
            report.passed_over["dated before the membership was imported (the import read them)"] += 1
            continue
        news.append((change, product, membership))
    approvals = _newest_approvals(change for change, _, _ in news if change.event_type in granting)
    dated = []
    for change, product, membership in news:
        occurred = _date(change, known, membership, approvals, now)
        subscription = observed.subscriptions.get((change.email, change.product_id))
        paid_until = None
        if (
            subscription is not None
            and change.event_type in granting
            and approvals.get((change.email, change.product_id)) == change.at
        ):
            # The newest payment pays until the next charge (once cancelled: the last day of access).
            paid_until = subscription.access_until
        body = api.webhook(change, occurred, paid_until)
        dated.append(_finding(source, rules, planner, change, product, membership, body, occurred, now))
    report.findings.extend(sorted(dated, key=lambda finding: (finding.occurred_at, finding.email)))


def _imported_after(change: ApiChange, membership: MembershipView | None) -> bool:
    """A dated change older than a membership no platform event ever moved (an import's: it read the
    platform as it was then, and placed the membership accordingly): nothing to catch up."""
    return (
        membership is not None
        and membership.last_event_at is None
        and membership.created_at is not None
        and change.at is not None
        and change.at <= membership.created_at
    )


def _product(source: Source, rules: Rules, change: ApiChange, known: Known) -> Product | None:
    """The product the rules give the change; a change without an offer code (a cancellation) of a
    product id several products share by offer: the one the buyer holds a membership of."""
    product = rules.product_for(source.name, change.product_id, change.offer_code)
    if product is not None or change.offer_code is not None:
        return product
    for candidate in rules.products.values():
        if change.product_id in candidate.source_ids.get(source.name, ()) and (
            (change.email, candidate.key) in known.memberships
        ):
            return candidate
    return None


def _newest_approvals(changes: Iterable[ApiChange]) -> dict[tuple[str, str], datetime]:
    newest: dict[tuple[str, str], datetime] = {}
    for change in changes:
        key = (change.email, change.product_id)
        if change.at is not None and (key not in newest or change.at > newest[key]):
            newest[key] = change.at
    return newest


def _date(
    change: ApiChange,
    known: Known,
    membership: MembershipView | None,
    approvals: dict[tuple[str, str], datetime],
    now: datetime,
) -> datetime:
    if change.at is not None:
        return min(change.at, now)
    candidates = [change.after]
    if change.transaction is not None:
        candidates.append(known.newest.get(change.transaction))
    else:  # a subscription's change follows the membership's history and the payments found with it
        candidates.append(membership.last_event_at if membership else None)
        candidates.append(approvals.get((change.email, change.product_id)))
    newest = max((moment for moment in candidates if moment is not None), default=None)
    return now if newest is None else min(newest + _AFTER, now)


def _finding(
    source: Source,
    rules: Rules,
    planner: Planner,
    change: ApiChange,
    product: Product,
    membership: MembershipView | None,
    body: dict,
    occurred: datetime,
    now: datetime,
) -> Finding:
    """The change as a finding, with what the rules would do with it on the membership as it is."""
    inp = from_source(source, body, rules)
    state = membership.state if membership else None
    facts = event_facts(
        now,
        inp,
        email=change.email,
        name=membership.name if membership else inp.fields.get("name"),
        discord_id=membership.discord_id if membership else None,
        transaction=membership.transaction if membership else None,
        with_token=False,
    )
    plan = planner.plan(change.event_type, inp.fields, inp.product or product, state, facts)
    return Finding(
        product=product.key,
        event_type=change.event_type,
        status=change.status,
        email=change.email,
        transaction=change.transaction,
        subscriber_code=change.subscriber_code,
        occurred_at=occurred,
        change_key=change.change_key or "",
        effect=_effect(source, change, plan),
        from_state=state,
        to_state=None if plan.ignored else plan.to_state,
        body=body,
    )


def _effect(source: Source, change: ApiChange, plan) -> Effect:
    if plan.ignored:
        return "none"
    removes = any((use := RESOURCES.get(step.action)) is not None and not use.grants for step in plan.steps)
    if removes or change.event_type in source.revoking_events or change.event_type == _CANCELLATION:
        return "ends"
    if change.event_type in source.granting_events:
        return "grants"
    return "changes"
