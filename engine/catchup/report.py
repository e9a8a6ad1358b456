"""What a sync found: the changes the platform shows that no event of the engine brought.

A :class:`Finding` is one such change, dated and written as the webhook that would have brought
it; what the rules would do with it now is its ``effect``. A :class:`Report` holds them with
what was read, counts per product and event, and what was passed over and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# What the rules would do with a change, applied to the membership as it is now.
Effect = Literal["grants", "ends", "changes", "none"]
EFFECTS: tuple[Effect, ...] = ("grants", "ends", "changes", "none")


@dataclass(frozen=True)
class Finding:
    product: str  # the product key the rules give it
    event_type: str
    status: str  # the platform's status, as its API shows it
    email: str
    transaction: str | None
    subscriber_code: str | None
    occurred_at: datetime
    change_key: str
    effect: Effect
    from_state: str | None
    to_state: str | None
    body: dict[str, Any] = field(compare=False, repr=False)  # the webhook, as stored

    def line(self) -> str:
        """``ana@example.com: PURCHASE_REFUNDED (curso, HP123, REFUNDED at Hotmart): active -> refunded``"""
        code = self.transaction or self.subscriber_code
        if self.effect == "none":
            outcome = f"changes nothing now ({self.from_state or 'no membership'})"
        else:
            outcome = f"{self.from_state or 'new'} -> {self.to_state}"
        return f"{self.email}: {self.event_type} ({self.product}, {code}, {self.status}): {outcome}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "product": self.product,
            "event_type": self.event_type,
            "status": self.status,
            "email": self.email,
            "transaction": self.transaction,
            "subscriber_code": self.subscriber_code,
            "occurred_at": self.occurred_at.isoformat(),
            "effect": self.effect,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "change_key": self.change_key,  # what a person confirms (the admin page's apply)
        }


@dataclass
class Report:
    source: str
    since: datetime
    until: datetime
    findings: list[Finding] = field(default_factory=list)
    # Per product id read: subscriptions and sales.
    read: dict[str, dict[str, int]] = field(default_factory=dict)
    # Changes passed over, by why: a product the rules do not claim, nobody here to apply it to...
    passed_over: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.findings

    def counts(self) -> dict[str, dict[str, int]]:
        """Per product key, the findings per event type."""
        counts: dict[str, Counter[str]] = {}
        for finding in self.findings:
            counts.setdefault(finding.product, Counter())[finding.event_type] += 1
        return {product: dict(sorted(by_type.items())) for product, by_type in sorted(counts.items())}

    def totals(self) -> dict[str, int]:
        effects = Counter(finding.effect for finding in self.findings)
        return {"found": len(self.findings), **{effect: effects[effect] for effect in EFFECTS}}

    def ending(self) -> list[Finding]:
        """The findings that would end someone's access: what the blast-radius guard counts."""
        return [finding for finding in self.findings if finding.effect == "ends"]

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        return {
            "source": self.source,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "read": self.read,
            "totals": self.totals(),
            "counts": self.counts(),
            "passed_over": dict(sorted(self.passed_over.items())),
            "findings": [finding.to_dict() for finding in self.findings[:limit]],
            "notes": list(self.notes),
        }

    def summary(self, examples: int = 10) -> list[str]:
        """The report as an operator reads it: what was read, a table per product, examples."""
        subscriptions = sum(read.get("subscriptions", 0) for read in self.read.values())
        sales = sum(read.get("sales", 0) for read in self.read.values())
        lines = [
            f"{subscriptions} subscription(s) and {sales} sale(s) read from {self.source} "
            f"(sales since {self.since:%Y-%m-%d %H:%M} UTC); "
            f"{len(self.findings)} change(s) no event brought"
        ]
        counts = self.counts()
        if counts:
            width = max(len(product) for product in counts)
            for product, by_type in counts.items():
                lines.append(f"  {product:<{width}}  " + ", ".join(f"{kind} {n}" for kind, n in by_type.items()))
        for finding in self.findings[:examples]:
            lines.append(f"  {finding.line()}")
        if len(self.findings) > examples:
            lines.append(f"  ... and {len(self.findings) - examples} more (--json lists them)")
        for why, n in sorted(self.passed_over.items()):
            lines.append(f"  passed over: {n} {why}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return lines
