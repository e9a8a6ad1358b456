"""The onboarding code a student types in ``/registrar``: its alphabet and its generator."""

from __future__ import annotations

import secrets

# No look-alikes (0/O, 1/I): 32 symbols, 5 bits each; 8 characters = 40 bits.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
assert len(set(CODE_ALPHABET)) == 32


def new_code(length: int = 8) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))
