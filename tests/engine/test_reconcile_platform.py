"""Reconcile against the course platform, without I/O: which classes are asked about, how the
platform's list becomes each student's classes, and what is reported but never removed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from connectors.errors import Unavailable
from engine.lifecycle.access import derive
from engine.reconcile.diff import AccessDiff, MembershipView, Report, StudentView, diff_student, unclaimed_classes
from engine.reconcile.world import FAILED, PLATFORM, TABLE, class_keys, no_progress, read_platform_classes
from engine.rules import load_rules
from tests.conftest import RULES

ACCESS = derive(load_rules(RULES))
CLASS = "curso-2026"


def student(student_id: int, email: str, state: str | None = "active", *, owned=(), classes=()) -> StudentView:
    memberships = [MembershipView(10 * student_id, "curso", state)] if state else []
    view = StudentView(student_id, email, "80351110224678912", None, memberships)
    view.owned = {("class", key): [10 * student_id] for key in owned}
    view.actual = {"class": set(classes)}
    return view


def diff(*views: StudentView) -> Report:
    report = Report(AccessDiff(students=len(views)), checked=["class"])
    for view in views:
        diff_student(view, ACCESS, report)
    return report


@dataclass
class Platform:
    """A classes connector's read side: each class's e-mails, or an error for one class."""

    lists: dict[str, list[str]] = field(default_factory=dict)
    failing: str | None = None
    reads_enrollments: bool = True
    asked: list[str] = field(default_factory=list)

    def list_enrollments(self, key: str) -> Iterator[str]:
        self.asked.append(key)
        yield from self.lists.get(key, [])
        if key == self.failing:
            raise Unavailable("classes.unavailable", f"enrollments of {key}, page 2: HTTP 503")


@dataclass
class Rt:
    connector: object | None

    def connector_for(self, action: str):
        assert action == "enroll"
        return self.connector


def test_a_lost_enrollment_is_missing_and_a_refunded_one_the_engine_gave_is_extra():
    lost = student(1, "ana@example.com", owned=[CLASS], classes=[])  # the platform lost Ana
    refunded = student(2, "bia@example.com", "refunded", owned=[CLASS], classes=[CLASS])
    report = diff(lost, refunded)
    assert [(c.email, c.kind, c.resource) for c in report.diff.grants] == [("ana@example.com", "class", CLASS)]
    assert [(c.email, c.membership_id) for c in report.diff.revokes] == [("bia@example.com", 20)]


def test_an_enrollment_the_engine_never_gave_is_reported_and_not_removed():
    by_hand = student(3, "caio@example.com", "refunded", classes=[CLASS])  # no ledger row
    allowed = student(4, "duda@example.com", classes=[CLASS])  # the rules want it: nothing to say
    report = diff(by_hand, allowed)
    assert report.diff.empty
    assert unclaimed_classes([by_hand, allowed], ACCESS, {}) == [
        f"class {CLASS}: 1 enrollment(s) on the course platform that the engine did not give and the rules "
        "do not allow, left as they are: caio@example.com"
    ]


def test_strangers_are_counted_with_a_few_examples():
    strangers = {CLASS: [f"p{i}@example.com" for i in range(7)], "python-pro": ["x@example.com"]}
    [course, python] = unclaimed_classes([], ACCESS, strangers)
    assert course.startswith(f"class {CLASS}: 7 enrollment(s)")
    assert course.endswith("p0@example.com, p1@example.com, p2@example.com, p3@example.com, p4@example.com and 2 more")
    assert python.startswith("class python-pro: 1 enrollment(s)") and python.endswith("x@example.com")


def test_the_classes_asked_about_are_the_students_products_and_the_ledgers():
    assert class_keys([student(1, "ana@example.com")], ACCESS) == [CLASS]
    dropped = student(2, "bia@example.com", None, owned=["turma-2025"])  # only the ledger knows it
    assert class_keys([dropped], ACCESS) == ["turma-2025"]
    assert class_keys([], ACCESS) == []


def test_the_platforms_list_becomes_each_students_classes():
    ana, bia = student(1, "ana@example.com", classes=["stale"]), student(2, "bia@example.com", classes=[CLASS])
    platform = Platform({CLASS: ["ana@example.com", "eve@example.com"]})
    read = read_platform_classes(Rt(platform), [ana, bia], [CLASS], no_progress)
    assert (read.source, read.compared, read.note()) == (PLATFORM, True, None)
    assert ana.actual["class"] == {CLASS} and bia.actual["class"] == set()  # the platform's truth, not the table's
    assert read.strangers == {CLASS: ["eve@example.com"]}


def test_a_platform_that_cannot_be_read_leaves_classes_not_compared_and_the_views_as_they_were():
    ana = student(1, "ana@example.com", classes=[CLASS])
    platform = Platform({CLASS: ["ana@example.com"], "python-pro": ["ana@example.com"]}, failing="python-pro")
    read = read_platform_classes(Rt(platform), [ana], [CLASS, "python-pro"], no_progress)
    assert (read.source, read.compared) == (FAILED, False)
    assert read.note() == "classes not compared: classes.unavailable: enrollments of python-pro, page 2: HTTP 503"
    assert ana.actual["class"] == {CLASS}  # never half a list


def test_without_the_url_or_the_flag_the_engines_table_is_compared_and_said_so():
    ana = student(1, "ana@example.com", classes=[CLASS])
    for rt, reason in (
        (Rt(Platform(reads_enrollments=False)), "COURSE_ENROLLMENTS_URL is not set"),
        (Rt(None), "COURSE_WEBHOOK_ENABLED is off"),
    ):
        read = read_platform_classes(rt, [ana], [CLASS], no_progress)
        assert (read.source, read.compared, read.reason) == (TABLE, True, reason)
        assert read.note() == f"classes compared with the engine's own table, not the course platform's list: {reason}"
        assert ana.actual["class"] == {CLASS}
