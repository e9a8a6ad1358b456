"""The students read model: which states count as "stuck" comes from the rules, not from a state
name; the search box's folding and phone digits (on PostgreSQL and on SQLite, ``make run``'s); the
CSV export's batches and its cells."""

from __future__ import annotations

import csv
import io
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.db.folding import accent_pattern, fold
from engine.db.migrate import upgrade
from engine.db.models import Membership, Student
from engine.db.session import engine_of, session_factory
from engine.rules import check_rules
from engine.service.students import (
    EXPORT_COLUMNS,
    StudentFilters,
    export_csv,
    export_rows,
    phone_digits,
    spreadsheet_safe,
    states_waiting_for_link,
    student_page,
)
from engine.settings import Settings
from tests.conftest import RULES, load_payload, shipped_rules
from tests.purchases import COMUNIDADE_ID, purchase

ANA = "ana.exemplo@example.com"


def renamed_rules(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the shipped rules with the state ``old`` called ``new`` everywhere."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    for path in target.rglob("*.yaml"):
        path.write_text(path.read_text().replace(old, new))
    return target


def test_the_shipped_rules_wait_for_the_link_in_pending_onboarding():
    assert states_waiting_for_link(shipped_rules()) == {"pending_onboarding"}


def test_a_renamed_waiting_state_is_the_one_that_waits(tmp_path):
    rules, problems = check_rules(renamed_rules(tmp_path, "pending_onboarding", "awaiting_discord"))
    assert problems == []
    assert states_waiting_for_link(rules) == {"awaiting_discord"}


def test_stuck_students_are_found_in_the_renamed_state(make_harness, tmp_path):
    h = make_harness(rules_dir=renamed_rules(tmp_path, "pending_onboarding", "awaiting_discord"))
    h.deliver(load_payload("purchase_approved.json"))
    rules = h.runtime.rules.rules

    def stuck(days: int) -> list[str]:
        with h.runtime.sessions() as session:
            page = student_page(session, rules, stuck_days=days, now=h.clock())
        return [student.email for student in page.items]

    with h.runtime.sessions() as session:
        assert session.scalars(select(Membership.state)).all() == ["awaiting_discord"]
    assert stuck(1) == []  # just bought
    h.clock.advance(days=2)
    assert stuck(1) == [ANA]
    assert stuck(3) == []


def test_folding_lowers_and_drops_the_accents_portuguese_uses():
    assert fold("JOÃO Conceição Ângela Müller Ñandú") == "joao conceicao angela muller nandu"
    assert fold("Ana_100%") == "ana_100%"


def test_the_accent_pattern_finds_any_accents_and_takes_every_other_character_literally():
    # Python's re reads this subset (classes, literals, escaped punctuation) as PostgreSQL does.
    def finds(typed: str, name: str) -> bool:
        return re.search(accent_pattern(typed), name, re.IGNORECASE) is not None

    assert finds("conceicao (rj)", "Maria CONCEIÇÃO (RJ)") and finds("CONCEIÇÃO", "conceicao")
    assert finds("joão", "JOAO") and not finds("joao", "jono")
    assert not finds("jo.o", "joão") and not finds("a+", "aa") and not finds("[a", "a")
    assert accent_pattern("c 1") == "[cCÇç]\\ 1"


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("(11) 99999-0001", "11999990001"),
        ("+55 11 99999.0001", "5511999990001"),
        ("0001", "0001"),
        ("001", None),  # too few: nearly every phone
        ("ana 99999", None),  # not a phone
        ("HP10000000000001", None),
    ],
)
def test_phone_digits_are_read_only_from_what_looks_like_a_phone(typed, digits):
    assert phone_digits(typed) == digits


def test_a_cell_a_spreadsheet_would_run_becomes_text():
    for formula in ("=1+1", "+5511999990001", "-2+3", "@SUM(A1)", "\t=1", "\r=1"):
        assert spreadsheet_safe(formula) == "'" + formula
    assert spreadsheet_safe("Ana = Bia") == "Ana = Bia"
    assert spreadsheet_safe(None) == "" and spreadsheet_safe("") == ""


def test_the_export_reads_in_batches_and_misses_no_one(make_harness):
    h = make_harness()
    h.deliver(purchase("a@example.com", envelope="ex-1"))
    h.deliver(purchase("b@example.com", envelope="ex-2"))
    h.deliver(
        purchase(
            "b@example.com",
            envelope="ex-3",
            product_id=COMUNIDADE_ID,
            template="purchase_approved_subscription_first.json",
        )
    )
    h.deliver(purchase("c@example.com", envelope="ex-4"))
    with h.runtime.sessions.begin() as session:
        session.add(Student(email="solo@example.com", name="Sem Matrícula"))  # no membership (yet)
    rules, now = h.runtime.rules.rules, h.clock()

    def exported(batch: int, filters: StudentFilters = StudentFilters()) -> list[tuple[str, str | None]]:
        return [(row[0], row[4]) for row in export_rows(h.runtime.sessions, rules, filters, now=now, batch=batch)]

    everyone = [
        ("solo@example.com", None),
        ("c@example.com", "curso"),
        ("b@example.com", "curso"),
        ("b@example.com", "comunidade"),
        ("a@example.com", "curso"),
    ]
    for batch in (1, 2, 3, 1000):
        assert exported(batch) == everyone, batch
    assert exported(1, StudentFilters(product="comunidade")) == [
        ("b@example.com", "curso"),
        ("b@example.com", "comunidade"),
    ]
    assert exported(2, StudentFilters(search="A@EXAMPLE")) == [("a@example.com", "curso")]

    text = "".join(export_csv(h.runtime.sessions, rules, StudentFilters(), now=now, batch=2))
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS and len(rows) == 1 + len(everyone)
    assert rows[1] == ["solo@example.com", "Sem Matrícula", "", "", "", "", "", ""]


def test_the_search_and_filters_work_on_sqlite_too(tmp_path, request):
    """``make run`` serves the page on SQLite, which has no translate(): the folding is a function
    each connection registers."""
    settings = Settings(ENGINE_ENV="test", var_dir=tmp_path)
    upgrade(settings)
    sessions = session_factory(settings)
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    with sessions.begin() as session:
        for email, name, phone, discord_id in (
            ("joao@example.com", "JOÃO Conceição", "+5521988887777", "300000000000000042"),
            ("ana@example.com", "Ana Souza", None, None),
        ):
            session.add(Student(email=email, name=name, phone=phone, discord_id=discord_id))

    def emails(**filters) -> list[str]:
        with sessions() as session:
            return [s.email for s in student_page(session, None, now=now, **filters).items]

    request.addfinalizer(engine_of(sessions).dispose)
    assert emails(search="joao conceicao") == ["joao@example.com"]
    assert emails(search="conceiçÃo") == ["joao@example.com"]
    assert emails(search="a_s") == [] and emails(search="a%z") == []  # LIKE's wildcards are text
    assert emails(search="ANA s") == ["ana@example.com"]
    assert emails(search="(21) 98888") == ["joao@example.com"]
    assert emails(search="300000000000000042") == ["joao@example.com"]
    assert emails(linked=False) == ["ana@example.com"]
    assert emails(stuck_days=0) == []  # without rules nobody waits for the link
