"""The Students view: one search box, the filters the overview links to, pages of 50, the htmx
partial, and the whole filtered list as CSV; hostile addresses answer 422, never 500."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from urllib.parse import unquote

import pytest
from sqlalchemy import select, update

from engine.db.models import History, Membership, Student
from engine.service.student_import import import_students, read_rows
from tests.purchases import COMUNIDADE_ID, link_discord, purchase

pytestmark = pytest.mark.integration

ANA = "ana.exemplo@example.com"  # the reference payload's buyer: curso, then comunidade
JOAO = "joao.lima@example.com"  # comunidade, renewed, linked
FORMULA = "formula@example.com"  # curso; a name a spreadsheet would run
DISCORD_JOAO = "300000000000000042"
EVIL_NAME = '=HYPERLINK("http://evil.example","click")'


@pytest.fixture
def school(h):
    """Three students, newest first: formula, joão, ana."""
    h.deliver(purchase(ANA, envelope="st-1"))  # +5511999990001, HP10000000000001
    h.deliver(
        purchase(
            ANA, envelope="st-2", template="purchase_approved_subscription_first.json", transaction="HP40000000000001"
        )
    )
    joao = {"name": "João Conceição Lima", "phone": ("988887777", "21"), "product_id": COMUNIDADE_ID}
    h.deliver(
        purchase(
            JOAO,
            envelope="st-3",
            template="purchase_approved_subscription_first.json",
            transaction="HP30000000000001",
            **joao,
        )
    )
    # The renewal's transaction replaces the first one on the membership: that one stays on the events.
    h.deliver(
        purchase(
            JOAO, envelope="st-4", template="purchase_approved_renewal.json", transaction="HP30000000000003", **joao
        )
    )
    link_discord(h, JOAO, DISCORD_JOAO)
    h.deliver(
        purchase(FORMULA, envelope="st-5", name=EVIL_NAME, phone=("977776666", "31"), transaction="HP50000000000001")
    )
    with h.runtime.sessions() as session:
        assert session.scalars(select(Student.email).order_by(Student.id)).all() == [ANA, JOAO, FORMULA]
        assert session.scalar(select(Student.phone).where(Student.email == JOAO)) == "+5521988887777"
    return h


def listed(html: str) -> list[str]:
    """The students the table links to, in its order."""
    return [unquote(email) for email in re.findall(r'href="/ui/students/([^"]+)"', html)]


def found(client, **params) -> list[str]:
    response = client.get("/ui/students", params=params)
    assert response.status_code == 200, response.text
    return listed(response.text)


def test_the_list_is_newest_first_with_phone_discord_and_memberships(school, signed_in):
    html = signed_in.get("/ui/students").text
    assert listed(html) == [FORMULA, JOAO, ANA]
    assert "Students found: 3" in html
    joao = html[html.index(f"/ui/students/{JOAO.replace('@', '%40')}") :]
    row = joao[: joao.index("</tr>")]
    assert "João Conceição Lima" in row and "+5521988887777" in row
    assert '<span class="badge ok">linked</span>' in row and DISCORD_JOAO in row
    assert "comunidade: active" in row
    ana = html[html.index(f"/ui/students/{ANA.replace('@', '%40')}") :]
    row = ana[: ana.index("</tr>")]
    assert '<span class="badge warn">not linked</span>' in row
    assert "curso: pending_onboarding" in row and "comunidade: pending_onboarding" in row


def test_the_search_finds_by_part_of_the_email_name_or_phone(school, signed_in):
    assert found(signed_in, q="EXEMPLO@example") == [ANA]
    assert found(signed_in, q="  joao.lima ") == [JOAO]
    assert found(signed_in, q="@example.com") == [FORMULA, JOAO, ANA]
    assert found(signed_in, q="joao conceicao") == [JOAO]  # accents or not, any case
    assert found(signed_in, q="CONCEIÇÃO") == [JOAO]
    assert found(signed_in, q="exemplo souza") == [ANA]
    assert found(signed_in, q="(21) 98888-7777") == [JOAO]  # the digits typed, in the stored E.164
    assert found(signed_in, q="+55 11 99999-0001") == [ANA]
    assert found(signed_in, q="8887777") == [JOAO]
    assert found(signed_in, q="100%") == []  # LIKE's wildcards are text here
    assert found(signed_in, q="_") == []
    assert found(signed_in, q="jo.o") == []  # nor are a regular expression's: the name is matched by one
    assert found(signed_in, q="joão (") == [] and found(signed_in, q="[a") == []  # no 500 either
    assert found(signed_in, q="nobody") == []


def test_the_search_finds_a_discord_id_or_transaction_only_whole(school, signed_in):
    assert found(signed_in, q=DISCORD_JOAO) == [JOAO]
    assert found(signed_in, q=DISCORD_JOAO[:-1]) == []
    assert found(signed_in, q="HP10000000000001") == [ANA]  # the membership's transaction
    assert found(signed_in, q="HP40000000000001") == [ANA]
    assert found(signed_in, q="HP30000000000003") == [JOAO]
    assert found(signed_in, q="HP30000000000001") == [JOAO]  # replaced on the membership: an event's
    assert found(signed_in, q="HP3000000000000") == []


def test_each_filter_and_the_overviews_links(school, signed_in):
    assert found(signed_in, product="curso") == [FORMULA, ANA]
    assert found(signed_in, product="comunidade") == [JOAO, ANA]
    assert found(signed_in, state="active") == [JOAO]
    assert found(signed_in, product="comunidade", state="pending_onboarding") == [ANA]  # the same membership
    assert found(signed_in, product="curso", state="active") == []
    assert found(signed_in, linked="yes") == [JOAO]
    assert found(signed_in, linked="no") == [FORMULA, ANA]
    assert found(signed_in, linked="any", q="example.com", product="", state="") == [FORMULA, JOAO, ANA]
    assert found(signed_in, q="example.com", linked="yes") == [JOAO]

    assert found(signed_in, stuck="1") == []  # everyone just bought
    h = school
    days = h.runtime.settings.stuck_days
    with h.runtime.sessions.begin() as session:
        session.execute(
            update(Membership)
            .where(
                Membership.product_key == "curso",
                Membership.student_id == select(Student.id).where(Student.email == ANA).scalar_subquery(),
            )
            .values(state_changed_at=h.clock.now - timedelta(days=days + 1))
        )
    html = signed_in.get("/ui/students?stuck=1").text  # the overview's tile links here
    assert listed(html) == [ANA]
    assert re.search(r'name="stuck" type="checkbox" value="1" checked', html)
    assert f"for more than {days} days" in html
    assert found(signed_in, stuck="1", product="comunidade") == []  # ana's comunidade waits less
    assert found(signed_in, stuck="1", linked="no", q="souza") == [ANA]

    html = signed_in.get("/ui/students?product=curso&state=pending_onboarding").text  # an overview cell
    assert listed(html) == [FORMULA, ANA]
    assert '<option value="curso" selected>' in html and '<option value="pending_onboarding" selected>' in html


def test_a_product_or_state_the_rules_do_not_define_matches_what_the_database_holds(school, signed_in):
    response = signed_in.get("/ui/students", params={"product": "nope", "state": "old_state"})
    assert response.status_code == 200
    assert listed(response.text) == [] and "No student matches these filters." in response.text
    assert '<option value="nope" selected>' in response.text  # shown, so the operator sees why
    h = school
    with h.runtime.sessions.begin() as session:  # a state renamed since: the overview still counts it
        session.execute(update(Membership).where(Membership.product_key == "comunidade").values(state="old_state"))
    assert found(signed_in, state="old_state") == [JOAO, ANA]


def test_the_form_works_without_javascript_and_updates_the_table_with_htmx(school, signed_in):
    html = signed_in.get("/ui/students").text
    start = html.index('<form class="filters"')
    form = html[start : html.index("</form>", start)]
    assert 'method="get" action="/ui/students"' in form
    assert 'hx-get="/ui/students"' in form and 'hx-target="#results"' in form and 'hx-push-url="true"' in form
    for control in ("q", "product", "state", "linked", "stuck"):
        assert f'<label for="{control}"' in form and f'id="{control}"' in form
    assert 'id="results"' in html and '<th scope="col">' in html

    partial = signed_in.get("/ui/students", params={"q": "joao"}, headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert "<html" not in partial.text and "<form" not in partial.text
    assert listed(partial.text) == [JOAO] and "Students found: 1" in partial.text
    assert 'href="/ui/students.csv?q=joao"' in partial.text  # the export follows the filters
    assert "HX-Request" in partial.headers["vary"]
    restored = signed_in.get(
        "/ui/students?q=joao", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in restored.text and listed(restored.text) == [JOAO]  # the back button needs the page


def _import(h, count: int) -> None:
    """``count`` students with an active curso membership, through `engine import-students`' service."""
    text = "email,product\n" + "".join(f"aluno{n:03d}@example.com,curso\n" for n in range(count))
    rules = h.runtime.rules.rules
    rows, errors = read_rows(text, rules)
    report, problems = import_students(
        h.runtime.sessions, rows, rules, file_errors=errors, source="t.csv", adopt_access=False, dry_run=False
    )
    assert problems == [] and report.students_created == count


def test_pages_of_fifty_and_their_boundaries(h, signed_in):
    _import(h, 51)
    first = signed_in.get("/ui/students").text
    assert len(listed(first)) == 50 and listed(first)[0] == "aluno050@example.com"
    assert "Students found: 51" in first and "Page 1 of 2" in first
    assert 'href="/ui/students?page=2"' in first and 'rel="prev"' not in first
    second = signed_in.get("/ui/students?page=2").text
    assert listed(second) == ["aluno000@example.com"] and "Page 2 of 2" in second
    assert 'href="/ui/students" hx-get="/ui/students"' in second and 'rel="next"' not in second
    filtered = signed_in.get("/ui/students", params={"q": "aluno04", "page": 1}).text
    assert len(listed(filtered)) == 10 and "Page 1" not in filtered  # one page: no pager
    beyond = signed_in.get("/ui/students?page=3").text
    assert listed(beyond) == [] and "This page is past the last one." in beyond
    searched = signed_in.get("/ui/students", params={"q": "ALUNO", "page": 2}).text  # a search counts as it reads
    assert listed(searched) == ["aluno000@example.com"] and "Students found: 51" in searched
    searched = signed_in.get("/ui/students", params={"q": "aluno", "page": 3}).text
    assert listed(searched) == [] and "Students found: 51" in searched and "past the last one" in searched
    assert signed_in.get("/ui/students?page=100000").status_code == 200

    exported = signed_in.get("/ui/students.csv?state=active&product=curso")  # every page, not only the first
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert (
        len(rows) == 51 and rows[0]["email"] == "aluno050@example.com" and rows[-1]["email"] == "aluno000@example.com"
    )


def test_the_csv_has_every_membership_and_no_formula(school, signed_in):
    response = signed_in.get("/ui/students.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert re.fullmatch(r'attachment; filename="students-\d{8}-\d{4}\.csv"', response.headers["content-disposition"])
    lines = response.text.splitlines()
    assert lines[0] == "email,name,phone,discord_id,product,state,since,paid_until"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(row["email"], row["product"]) for row in rows] == [
        (FORMULA, "curso"),
        (JOAO, "comunidade"),
        (ANA, "curso"),  # one row per membership
        (ANA, "comunidade"),
    ]
    formula, joao = rows[0], rows[1]
    assert formula["name"] == "'" + EVIL_NAME  # text to a spreadsheet, not a formula
    assert formula["phone"] == "'+5531977776666"
    assert joao["discord_id"] == DISCORD_JOAO and joao["state"] == "active"
    assert joao["since"].startswith("2026-03-02T12:00:00") and joao["paid_until"].startswith("20")
    assert rows[2]["paid_until"] == ""

    linked = list(csv.DictReader(io.StringIO(signed_in.get("/ui/students.csv?linked=yes").text)))
    assert [row["email"] for row in linked] == [JOAO]
    with school.runtime.sessions() as session:
        entry = session.scalars(select(History).where(History.kind == "students_exported").order_by(History.id)).all()
    assert [(e.actor, e.detail) for e in entry] == [
        ("admin:ana", {"students": 3}),
        ("admin:ana", {"linked": "yes", "students": 1}),
    ]


HOSTILE = [
    {"page": "0"},
    {"page": "100001"},
    {"page": "99999999999999999999999999"},
    {"page": "two"},
    {"q": "x" * 201},
    {"q": "ana\x00"},
    {"linked": "maybe"},
    {"stuck": "perhaps"},
    {"product": "p" * 101},
    {"state": "s" * 51},
    {"state": "active\n"},
]


@pytest.mark.parametrize("path", ["/ui/students", "/ui/students.csv"])
def test_hostile_addresses_answer_a_422_page(signed_in, path):
    for params in HOSTILE:
        if path.endswith(".csv") and "page" in params:
            continue  # the export has no pages: an unknown parameter is ignored
        response = signed_in.get(path, params=params)
        assert response.status_code == 422, params
        assert response.headers["content-type"].startswith("text/html")
        assert "a value the page cannot read" in response.text


def test_the_page_speaks_portuguese(school, signed_in):
    html = signed_in.get("/ui/students", headers={"Accept-Language": "pt-BR,pt;q=0.9"}).text
    assert '<html lang="pt-BR">' in html
    assert "Alunos encontrados: 3" in html and "Telefone" in html and "Matrículas" in html
    assert "não vinculado" in html and "Qualquer produto" in html and "Baixar em CSV" in html
    assert "Nenhum aluno" in signed_in.get("/ui/students?q=zz", headers={"Accept-Language": "pt-BR"}).text


def test_signing_in_comes_first(browser):
    for path in ("/ui/students?stuck=1", "/ui/students.csv"):
        response = browser.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/ui/login?next=")
