"""The lifecycle as a mermaid ``stateDiagram-v2`` (for the docs and pull requests)."""

from __future__ import annotations

from engine.rules.model import Rules, TransitionRule


def _label(rule: TransitionRule, event: str) -> str:
    parts = [event]
    if rule.kinds:
        parts.append(f"({'/'.join(rule.kinds)})")
    if rule.if_:
        parts.append(f"[if {rule.if_.describe()}]")
    if rule.unless:
        parts.append(f"[unless {rule.unless.describe()}]")
    # ':' ends a mermaid label early.
    return " ".join(parts).replace(":", " ")


def mermaid(rules: Rules) -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {rules.initial}"]
    for rule in rules.transitions:
        sources = rules.states if "*" in rule.sources else rule.sources
        for source in sources:
            dest = rule.dest or source
            for event in rule.events:
                lines.append(f"    {source} --> {dest}: {_label(rule, event)}")
    return "\n".join(lines) + "\n"
