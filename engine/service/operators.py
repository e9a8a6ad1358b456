"""Who may operate the engine: the admin page's named operators, their sessions, and the sign-in
lockout the page shares with the admin API.

An operator is a ``name:scrypt$...`` entry of ``ADMIN_USERS`` (or ``ADMIN_USERS_FILE``), made by
``engine admin-user NAME``; ``ADMIN_API_TOKEN`` also signs in, as ``admin``. Failed sign-ins are
counted per client address in the database (every API process sees the same count): past
``LOGIN_MAX_FAILURES`` within ``LOGIN_LOCKOUT_MINUTES`` the address is refused, right secret or not,
until the window has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from engine.db.models import AdminSession, LoginAttempt
from engine.settings import Settings, operator_entries

API_OPERATOR = "admin"  # the name ADMIN_API_TOKEN signs in as

# scrypt's interactive-login parameters (16 MiB, ~50 ms): slow for a guesser, quick for a person.
_N, _R, _P = 2**14, 8, 1


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """``scrypt$16384$8$1$<salt>$<hash>`` (n, r, p, then base64): what ADMIN_USERS holds for ``secret``
    (no comma or colon in it: entries are separated by commas, a name from its hash by a colon)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, hashed: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = hashed.split("$")
        expected = base64.b64decode(digest, validate=True)
        given = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=128 * 1024 * 1024,
        )
    except ValueError:  # a malformed entry (binascii.Error is one) verifies nothing
        return False
    return scheme == "scrypt" and hmac.compare_digest(given, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def operators(settings: Settings) -> dict[str, str]:
    """Operator name -> secret hash, from ADMIN_USERS and ADMIN_USERS_FILE (the file wins on a name)."""
    text = settings.admin_users.get_secret_value()
    if settings.admin_users_file is not None:
        text += "\n" + settings.admin_users_file.read_text(encoding="utf-8")
    return {name: hashed for name, hashed in operator_entries(text) if name and hashed.startswith("scrypt$")}


def authenticate(settings: Settings, name: str, secret: str) -> str | None:
    """The operator ``name`` signs in as with ``secret``, or None."""
    name = name.strip()
    token = settings.admin_api_token.get_secret_value()
    if name == API_OPERATOR and token and hmac.compare_digest(secret.encode(), token.encode()):
        return API_OPERATOR
    hashed = operators(settings).get(name)
    if hashed is None:
        # As slow as a real check, so that timing does not tell which names exist.
        verify_secret(secret, _DECOY)
        return None
    return name if verify_secret(secret, hashed) else None


_DECOY = hash_secret("decoy", salt=b"\0" * 16)


# --- the lockout ---------------------------------------------------------------------------


def locked_for(session: Session, settings: Settings, address: str, *, now: datetime) -> float | None:
    """Seconds until ``address`` may try again, or None when it is not locked out."""
    window = timedelta(minutes=settings.login_lockout_minutes)
    failures = session.execute(
        select(func.count(), func.min(LoginAttempt.at)).where(
            LoginAttempt.address == address, LoginAttempt.at > now - window, LoginAttempt.ok.is_(False)
        )
    ).one()
    if failures[0] < settings.login_max_failures:
        return None
    return max(1.0, (failures[1] + window - now).total_seconds())


def record_attempt(session: Session, address: str, operator: str | None, *, ok: bool, now: datetime) -> None:
    """Counts a sign-in; a success clears the address's failures (a person who mistyped is not
    locked out later by their old typos)."""
    if ok:
        session.execute(delete(LoginAttempt).where(LoginAttempt.address == address, LoginAttempt.ok.is_(False)))
    else:
        session.add(LoginAttempt(address=address[:64], operator=(operator or "")[:100] or None, at=now, ok=False))
    session.commit()


# --- sessions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    operator: str
    csrf_token: str
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, settings: Settings, operator: str, *, now: datetime) -> tuple[str, SignedIn]:
    """A new session for ``operator``: the cookie's token (never stored) and what it signs in."""
    token = secrets.token_urlsafe(32)
    signed = SignedIn(operator, secrets.token_urlsafe(32), now + timedelta(hours=settings.admin_session_hours))
    session.add(
        AdminSession(
            token_hash=_digest(token),
            operator=operator,
            csrf_token=signed.csrf_token,
            created_at=now,
            expires_at=signed.expires_at,
        )
    )
    # Expired sessions go when a new one comes: the table holds the sessions alive.
    session.execute(delete(AdminSession).where(AdminSession.expires_at <= now))
    session.commit()
    return token, signed


def session_of(session: Session, token: str | None, *, now: datetime) -> SignedIn | None:
    """Who the cookie's ``token`` signs in, while its session lasts."""
    if not token:
        return None
    row = session.get(AdminSession, _digest(token))
    if row is None or row.expires_at <= now:
        return None
    return SignedIn(row.operator, row.csrf_token, row.expires_at)


def close_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(AdminSession).where(AdminSession.token_hash == _digest(token)))
        session.commit()
