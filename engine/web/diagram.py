"""The lifecycle drawn on the server as SVG: no script, no inline style, nothing for the page's CSP
to block. States are boxes in rows by their distance from the initial state; one arrow per (from,
to) pair, its tooltip naming the events. Transitions from any state (``from: "*"``) start at one
dashed box above the others instead of at every state. The transitions table under it is the
readable, accessible account; this is the picture."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from markupsafe import Markup, escape

from engine.rules.model import Rules

ANY = "*"  # the pseudo-state of transitions from any state
BOX_W, BOX_H = 160, 36
GAP_X, GAP_Y = 36, 110
MARGIN = 24


@dataclass(frozen=True)
class Arrow:
    source: str
    dest: str
    events: tuple[str, ...]


def arrows(rules: Rules) -> list[Arrow]:
    """Every (from, to) pair a transition joins, once, with its events in rule order; staying
    transitions (no ``to``) are left to the table."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for rule in rules.transitions:
        sources = (ANY,) if ANY in rule.sources else rule.sources
        for source in sources:
            dest = rule.dest or source
            if dest == source:
                continue
            events = pairs.setdefault((source, dest), [])
            events.extend(event for event in rule.events if event not in events)
    return [Arrow(source, dest, tuple(events)) for (source, dest), events in pairs.items()]


def rows(rules: Rules, drawn: list[Arrow]) -> list[list[str]]:
    """States by rank: breadth first from the initial state; unreachable ones in a last row."""
    rank = {rules.initial: 0}
    queue = deque([rules.initial])
    while queue:
        state = queue.popleft()
        for arrow in drawn:
            if arrow.source == state and arrow.dest not in rank:
                rank[arrow.dest] = rank[state] + 1
                queue.append(arrow.dest)
    last = max(rank.values(), default=0) + 1
    by_rank: dict[int, list[str]] = {}
    for state in rules.states:
        by_rank.setdefault(rank.get(state, last), []).append(state)
    ordered = [by_rank[r] for r in sorted(by_rank)]
    if any(arrow.source == ANY for arrow in drawn):
        ordered.insert(0, [ANY])
    return ordered


def lifecycle_svg(rules: Rules, *, title: str, any_state: str) -> Markup:
    """The diagram, to put in a page as is (every name escaped); ``title`` is its accessible name,
    ``any_state`` the dashed box's label, both in the page's language."""
    drawn = arrows(rules)
    layout = rows(rules, drawn)
    widest = max(len(row) for row in layout)
    width = 2 * MARGIN + widest * BOX_W + (widest - 1) * GAP_X
    place: dict[str, tuple[float, float, int]] = {}  # state -> (left, top, row)
    for index, row in enumerate(layout):
        row_width = len(row) * BOX_W + (len(row) - 1) * GAP_X
        left = (width - row_width) / 2
        for column, state in enumerate(row):
            place[state] = (left + column * (BOX_W + GAP_X), MARGIN + index * (BOX_H + GAP_Y), index)
    ends, below = _ends(drawn, place, last_row=len(layout) - 1)
    height = 2 * MARGIN + len(layout) * BOX_H + (len(layout) - 1) * GAP_Y + below

    parts = [
        f'<svg class="diagram" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" aria-labelledby="lifecycle-title">',
        f'<title id="lifecycle-title">{escape(title)}</title>',
        '<defs><marker id="arrowhead" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/></marker></defs>',
    ]
    for arrow, (start, end) in zip(drawn, ends, strict=True):
        label = f"{any_state if arrow.source == ANY else arrow.source} → {arrow.dest}: {', '.join(arrow.events)}"
        kind = "edge any" if arrow.source == ANY else "edge"
        parts.append(
            f'<g class="{kind}"><title>{escape(label)}</title>'
            f'<path d="{_curve(start, end)}" fill="none" marker-end="url(#arrowhead)"/></g>'
        )
    for state, (left, top, _) in place.items():
        kind = "state any" if state == ANY else "state initial" if state == rules.initial else "state"
        text = any_state if state == ANY else state
        parts.append(
            f'<g class="{kind}"><rect x="{left:.0f}" y="{top:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="{left + BOX_W / 2:.0f}" y="{top + BOX_H / 2:.0f}" text-anchor="middle" '
            f'dominant-baseline="central">{escape(text)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


# One end of an arrow: (x, y, direction out of the box: +1 down from its bottom, -1 up from its top, bend).
End = tuple[float, float, int, float]


def _ends(
    drawn: list[Arrow], place: dict[str, tuple[float, float, int]], *, last_row: int
) -> tuple[list[tuple[End, End]], float]:
    """Where each arrow leaves and reaches its boxes, and the room arcs under the last row need.

    Down: bottom to top; up: top to bottom; along a row: over the top (under the last row). The ends
    on one side of a box are spread along it, ordered by where the other box is, so that arrows fan
    out instead of meeting in one point."""
    sides: list[tuple[str, str, float]] = []  # per arrow: source side, dest side, bend
    slots: dict[tuple[str, str], list[tuple[float, int, int]]] = {}  # (state, side) -> (other x, arrow, end)
    below = 0.0
    for index, arrow in enumerate(drawn):
        (sx, _, srow), (dx, _, drow) = place[arrow.source], place[arrow.dest]
        if drow != srow:
            source_side, dest_side = ("bottom", "top") if drow > srow else ("top", "bottom")
            bend = GAP_Y / 2
        else:
            source_side = dest_side = "bottom" if srow == last_row else "top"
            bend = GAP_Y / 3 + abs(dx - sx) / 8  # wider arcs higher: nested ones do not meet
            if srow == last_row:
                below = max(below, bend)
        sides.append((source_side, dest_side, bend))
        slots.setdefault((arrow.source, source_side), []).append((dx, index, 0))
        slots.setdefault((arrow.dest, dest_side), []).append((sx, index, 1))
    points: dict[tuple[int, int], tuple[float, float]] = {}
    for (state, side), items in slots.items():
        left, top, _ = place[state]
        items.sort()
        for position, (_, index, end) in enumerate(items, 1):
            points[(index, end)] = (
                left + BOX_W * position / (len(items) + 1),
                top + (BOX_H if side == "bottom" else 0),
            )
    ends = []
    for index, (source_side, dest_side, bend) in enumerate(sides):
        start, end = points[(index, 0)], points[(index, 1)]
        ends.append(
            (
                (*start, 1 if source_side == "bottom" else -1, bend),
                (*end, 1 if dest_side == "bottom" else -1, bend),
            )
        )
    return ends, below


def _curve(start: End, end: End) -> str:
    """A cubic curve leaving and reaching each box square to its side."""
    (x1, y1, out1, bend), (x2, y2, out2, _) = start, end
    return f"M {x1:.0f} {y1:.0f} C {x1:.0f} {y1 + out1 * bend:.0f} {x2:.0f} {y2 + out2 * bend:.0f} {x2:.0f} {y2:.0f}"
