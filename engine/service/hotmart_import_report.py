"""What ``engine import-students --from hotmart`` did (or would do, on a dry run), and its lines for the operator."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

EXAMPLES = 3  # e-mails shown per product and state


@dataclass
class HotmartImport:
    dry_run: bool
    onboard: bool
    products: list[str]
    read: int = 0  # subscriptions and sales read from Hotmart
    created: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # product -> state -> count
    examples: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    existing: Counter = field(default_factory=Counter)  # product -> memberships already there
    without_access: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # the rules end them
    unusable: list[str] = field(default_factory=list)  # items Hotmart sent that cannot be read
    unplaced: Counter = field(default_factory=Counter)  # Hotmart product id -> items no product of the rules takes
    students_created: int = 0
    codes: int = 0  # codes held, not sent (no onboard)
    timers: int = 0
    grants_recorded: int = 0
    onboarding: list[int] = field(default_factory=list)  # the onboarding events queued
    discord_ids_joined: int = 0
    discord_ids_unmatched: list[str] = field(default_factory=list)  # e-mails of the file Hotmart does not list
    errors: list[str] = field(default_factory=list)

    def count(self, product: str, state: str, email: str) -> None:
        self.created[product][state] += 1
        if len(self.examples[(product, state)]) < EXAMPLES:
            self.examples[(product, state)].append(email)

    @property
    def memberships_created(self) -> int:
        return sum(sum(states.values()) for states in self.created.values())

    def summary(self) -> list[str]:
        """The report, a line each: what was read, per product the memberships by state (with
        examples), then the students, codes, onboarding and Discord ids."""
        would = self.dry_run
        lines = [f"read {self.read} subscription(s) and purchase(s) from Hotmart ({', '.join(self.products)})"]
        for product in self.products:
            states = self.created.get(product, Counter())
            parts = [f"{count} {state}" for state, count in sorted(states.items())]
            line = f"{product}: {'would create' if would else 'created'} {sum(states.values())} membership(s)"
            line += f" ({', '.join(parts)})" if parts else ""
            line += f"; {self.existing[product]} already there"
            ended = self.without_access.get(product)
            if ended:
                listed = ", ".join(f"{count} {state}" for state, count in sorted(ended.items()))
                line += f"; not imported, no access under the rules: {listed}"
            lines.append(line)
            for state in sorted(states):
                more = ", ..." if states[state] > EXAMPLES else ""
                lines.append(f"  {state}: {', '.join(self.examples[(product, state)])}{more}")
        lines.append(
            f"{self.students_created} new student(s), {self.timers} timer(s), {self.grants_recorded} grant(s) recorded"
        )
        lines.append(self._onboarding_line())
        if self.discord_ids_joined or self.discord_ids_unmatched:
            line = f"Discord ids: {self.discord_ids_joined} joined"
            if self.discord_ids_unmatched:
                shown = ", ".join(self.discord_ids_unmatched[:EXAMPLES])
                line += f"; {len(self.discord_ids_unmatched)} for e-mails Hotmart does not list here (e.g. {shown})"
            lines.append(line)
        for product_id, count in sorted(self.unplaced.items()):
            lines.append(
                f"note: {count} item(s) of Hotmart product {product_id} fit no product of the rules "
                "(an offer code the rules do not list?)"
            )
        if self.unusable:
            lines.append(f"note: {len(self.unusable)} item(s) Hotmart sent could not be read, skipped:")
            lines += [f"  {entry}" for entry in self.unusable[:10]]
        return lines

    def _onboarding_line(self) -> str:
        if self.onboard:
            verb = "would queue" if self.dry_run else "queued"
            return f"onboarding: {verb} {len(self.onboarding)} (code, flow, reminders), sent by the worker"
        if self.codes:
            return (
                f"onboarding: none sent; {self.codes} waiting membership(s) hold a code nobody was told. "
                "engine import-students --from hotmart --onboard sends it"
            )
        return "onboarding: nobody waits for a code"

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "read": self.read,
            "created": {product: dict(states) for product, states in self.created.items()},
            "existing": dict(self.existing),
            "without_access": {product: dict(states) for product, states in self.without_access.items()},
            "students_created": self.students_created,
            "codes": self.codes,
            "timers": self.timers,
            "grants_recorded": self.grants_recorded,
            "onboarding": self.onboarding,
            "discord_ids_joined": self.discord_ids_joined,
            "discord_ids_unmatched": self.discord_ids_unmatched,
            "unusable": self.unusable,
            "errors": self.errors,
        }
