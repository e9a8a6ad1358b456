"""A buyer's phone as E.164 ("+5511999990001"), whichever platform sent it; None when implausible.

Every source reads its own phone fields and hands them here, so one student's number is the same
string from Hotmart, Kiwify or Eduzz (the ManyChat contact is found by it). The rules are those of
``shared/reference/hotmart.md`` §8, the first platform's, which hold for any Brazilian checkout.
"""

from __future__ import annotations

import re

from engine.sources.reader import PHONE_CHARS


def normalize_phone(number: str | None, code: str | None = None, country_iso: str | None = None) -> str | None:
    """Best-effort E.164 ("+5511999990001") following §8; None when implausible.

    ``code`` is the area code (the Brazilian DDD) when the platform sends it apart from the
    number (Hotmart's ``checkout_phone_code``), ``country_iso`` the buyer's country (Brazil when
    unknown).
    """
    if not isinstance(number, str) or not PHONE_CHARS.fullmatch(number.strip()):
        return None
    digits = re.sub(r"[^0-9]", "", number)
    country = country_iso.strip().upper() if isinstance(country_iso, str) else ""
    # §8 rule 2: a foreign buyer's checkout_phone already carries the DDI; so does "+...".
    has_ddi = number.strip().startswith("+") or country not in ("", "BR")
    if has_ddi:
        if not digits.startswith("55"):
            return "+" + digits if 8 <= len(digits) <= 15 else None
        national = digits[2:]
    else:
        ddd = ""
        if isinstance(code, str) and PHONE_CHARS.fullmatch(code.strip()):
            ddd = re.sub(r"[^0-9]", "", code)
        # §8 rule 3: an 8-9 digit number lacks the DDD (it cannot already contain it).
        if len(ddd) == 2 and len(digits) in (8, 9):
            digits = ddd + digits
        if len(digits) in (10, 11):
            national = digits
        elif len(digits) in (12, 13) and digits.startswith("55"):
            national = digits[2:]
        else:
            return None
    return "+55" + national if _plausible_brazilian(national) else None


def _plausible_brazilian(national: str) -> bool:
    """DDD (two digits, no zero) + 8-digit landline or 9-digit mobile starting with 9 (§8)."""
    if len(national) not in (10, 11) or "0" in national[:2]:
        return False
    return len(national) == 10 or national[2] == "9"
