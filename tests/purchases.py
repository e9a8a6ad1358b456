"""Hotmart purchases of named buyers (the reference payloads with another buyer, phone, product or
transaction), and a buyer linking Discord through the bot's own code: the students tests' seeds."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select

from engine.db.models import OnboardingToken, Student
from engine.onboarding.linking import LinkService
from tests.conftest import load_payload

CURSO_ID, COMUNIDADE_ID = 1111111, 2222222


def purchase(
    email: str,
    *,
    envelope: str,
    name: str | None = None,
    phone: tuple[str, str] | None = None,
    transaction: str | None = None,
    product_id: int | None = None,
    template: str = "purchase_approved.json",
) -> dict[str, Any]:
    """``template`` bought by ``email`` (``phone``: Hotmart's number and area code), its own envelope id."""
    body = copy.deepcopy(load_payload(template))
    body["id"] = envelope
    buyer = body["data"]["buyer"]
    buyer["email"] = email
    if name is not None:
        buyer["name"] = name
    if phone is not None:
        buyer["checkout_phone"], buyer["checkout_phone_code"] = phone
    if transaction is not None:
        body["data"]["purchase"]["transaction"] = transaction
    if product_id is not None:
        body["data"]["product"]["id"] = product_id
    return body


def link_discord(h, email: str, discord_id: str) -> None:
    """``email`` types their open code in /registrar as ``discord_id`` and the link is processed."""
    with h.runtime.sessions() as session:
        code = session.scalar(
            select(OnboardingToken.code)
            .join(Student, Student.id == OnboardingToken.student_id)
            .where(Student.email == email, OnboardingToken.used_at.is_(None), OnboardingToken.revoked_at.is_(None))
        )
    outcome = LinkService(h.runtime.sessions, h.runtime.rules, h.queued.append, clock=h.clock).link(discord_id, code)
    assert outcome.linked, outcome
    assert h.run_queue() == ["processed"]
