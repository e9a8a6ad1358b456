"""The Rules view (version, products and their ids, access, flows, the lifecycle drawn and listed)
and the dry-run form: the plan ``engine dry-run`` shows, for a pasted payload or a stored event,
with nothing run and nothing stored; a bad payload is a message, never a 500."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from engine.db.models import ActionRun, Event, Student
from engine.rules.model import TransitionRule
from engine.web.diagram import ANY, arrows, lifecycle_svg, rows
from tests.conftest import load_payload, shipped_rules
from tests.web.conftest import csrf_of

pytestmark = pytest.mark.integration


def _purchase(email: str = "lia@example.com", envelope: str = "dr-1") -> dict:
    body = copy.deepcopy(load_payload("purchase_approved.json"))
    body["id"] = envelope
    body["data"]["buyer"]["email"] = email
    return body


def stored_counts(h) -> tuple[int, int, int]:
    with h.runtime.sessions() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) for model in (Event, Student, ActionRun))


def dry_run(client, **form):
    token = csrf_of(client.get("/ui/rules/dry-run").text)
    return client.post("/ui/rules/dry-run", data={"csrf_token": token, **form})


def test_the_rules_page_lists_each_product_with_its_ids_access_and_flows(h, signed_in):
    html = signed_in.get("/ui/rules").text
    rules = h.runtime.rules.rules
    assert h.runtime.rules.version in html
    for product in rules.products.values():
        assert f'<th scope="row">{product.key}<br>' in html
        for ids in product.source_ids.values():
            assert all(f"<code>{product_id}</code>" in html for product_id in ids)
        assert all(f"<code>{role}</code>" in html for role in product.discord_roles)
        assert all(f"<code>{tag}</code>" in html for tag in product.manychat_tags)
        assert all(f"<code>{flow}</code>" in html for flow in product.flows.values())
    assert "<strong>hotmart</strong>: <code>1111111</code>" in html


def test_the_lifecycle_is_drawn_without_script_or_inline_style_and_listed_as_a_table(h, signed_in):
    html = signed_in.get("/ui/rules").text
    rules = h.runtime.rules.rules
    svg = html[html.index('<svg class="diagram"') : html.index("</svg>")]
    assert all(f">{state}</text>" in svg for state in rules.states)
    assert 'role="img"' in svg and 'aria-labelledby="lifecycle-title"' in svg
    assert "style=" not in html and html.count("<script") == 1  # htmx, from /ui/static
    start = html.index('id="transitions"')
    table = html[start : html.index("</table>", start)]
    assert table.count("<tr>") == len(rules.transitions) + 1
    assert "purchase_not_linked" in table and "unless discord_linked" in table and "issue_token" in table


def test_the_diagram_draws_each_pair_once_and_transitions_from_any_state_from_one_box():
    shipped = shipped_rules()
    refund_from_anywhere = TransitionRule(
        name="refund_from_anywhere",
        events=("PURCHASE_REFUNDED",),
        sources=("*",),
        dest="refunded",
        kinds=None,
        if_=None,
        unless=None,
        steps=(),
        file="lifecycle.yaml",
        line=1,
    )
    rules = replace(shipped, transitions=(*shipped.transitions, refund_from_anywhere))
    drawn = arrows(rules)
    pairs = [(arrow.source, arrow.dest) for arrow in drawn]
    assert len(pairs) == len(set(pairs)) and all(source != dest for source, dest in pairs)
    assert (ANY, "refunded") in pairs and ("active", "refunded") in pairs
    assert sum(arrow.source == ANY for arrow in drawn) == 1  # one arrow, not one per state
    layout = rows(rules, drawn)
    assert layout[0] == [ANY] and layout[1] == [rules.initial]
    assert sorted(state for row in layout[1:] for state in row) == sorted(rules.states)
    svg = lifecycle_svg(rules, title="<t>", any_state="any & all")
    assert "&lt;t&gt;" in svg and ">any &amp; all</text>" in svg  # text escaped
    assert svg.count("<rect") == len(rules.states) + 1 and svg.count("marker-end") == len(drawn)
    assert rows(shipped, arrows(shipped))[0] == [shipped.initial]  # no dashed box without such a transition


def test_a_pasted_payload_shows_the_plan_and_stores_nothing(h, signed_in):
    before = stored_counts(h)
    response = dry_run(signed_in, payload=json.dumps(_purchase()))
    assert response.status_code == 200
    html = response.text
    assert "purchase_not_linked" in html and "pending_onboarding" in html and "new" in html
    assert "unless discord_linked" in html and "issue_token" in html and "trigger_flow" in html
    assert "content20261101000000_000001" in html  # the onboarding flow's namespace, rendered
    assert "lia@example.com" in html and "nothing ran" in html
    assert stored_counts(h) == before
    assert h.discord.calls == [] and h.manychat.calls == [] and h.queued == []


def test_a_linked_student_in_a_chosen_state_is_planned_as_the_cli_plans_it(signed_in):
    html = dry_run(signed_in, payload=json.dumps(_purchase()), state="refunded", linked="1", source="hotmart").text
    assert "purchase_already_linked" in html and "active" in html and "add_role" in html
    assert '<option value="refunded" selected>' in html and 'name="linked" value="1" checked' in html


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[" * 100_000, "not valid JSON"),
        ("", "Paste a payload"),
        ("   ", "Paste a payload"),
    ],
)
def test_a_bad_payload_is_a_message_not_a_500(h, signed_in, payload, message):
    before = stored_counts(h)
    response = dry_run(signed_in, payload=payload)
    assert response.status_code == 200 and message in response.text
    assert stored_counts(h) == before


@pytest.mark.parametrize("payload", ["[]", "42", '"text"', "null", '{"data": 5}', '{"event": "NOPE"}', '{"a": NaN}'])
def test_json_of_any_shape_is_planned_or_ignored_never_a_500(h, signed_in, payload):
    before = stored_counts(h)
    response = dry_run(signed_in, payload=payload)
    assert response.status_code == 200 and "What the rules would do" in response.text
    assert stored_counts(h) == before


def test_a_stored_event_is_planned_again_on_the_students_data(h, signed_in):
    event_id = h.deliver(_purchase())
    before = stored_counts(h)
    html = dry_run(signed_in, event_id=str(event_id)).text
    assert f"Event #{event_id} planned again" in html and "lia@example.com" in html
    assert "pending_onboarding" in html and "Discord not linked" in html
    assert stored_counts(h) == before


def test_an_unknown_stored_event_is_a_404_page(signed_in):
    assert dry_run(signed_in, event_id="424242").status_code == 404


def test_the_dry_run_needs_the_csrf_token(h, signed_in):
    response = signed_in.post("/ui/rules/dry-run", data={"payload": json.dumps(_purchase())})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "form",
    [
        {"payload": "x" * (256 * 1024 + 1)},
        {"payload": "{}", "source": "myspace"},
        {"payload": "{}", "state": "nirvana"},
        {"event_id": "0"},
        {"event_id": "9007199254740992"},
        {"event_id": "twelve"},
        {"payload": "{}", "linked": "maybe"},
    ],
)
def test_hostile_form_values_answer_the_422_page(signed_in, form):
    response = dry_run(signed_in, **form)
    assert response.status_code == 422 and "cannot read" in response.text


def test_the_rules_page_speaks_portuguese(signed_in):
    html = signed_in.get("/ui/rules", headers={"Accept-Language": "pt-BR"}).text
    assert "Produtos" in html and "Transições" in html and "O ciclo de vida" in html
    form = signed_in.get("/ui/rules/dry-run", headers={"Accept-Language": "pt-BR"}).text
    assert "Simulação" in form and re.search(r"Mostrar o plano", form)
