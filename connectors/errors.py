"""What went wrong on the wire, as exceptions the step adapters turn into step results.

The wire clients (:mod:`connectors.discord_client`, :mod:`connectors.manychat_client`)
return a successful reply or raise one of these; the step adapters catch them and hand
the worker the failed :class:`~connectors.base.StepResult` each one stands for. The class
says what kind of failure it is, ``error`` names it for the admin::

    WireError
    ├── Unavailable        server error, transport failure or an unreadable reply (retryable)
    ├── RateLimited        still rate limited beyond what one call may wait (retryable)
    └── Rejected           the other side refused this request: a retry cannot fix it
        └── Misconfigured  ... because of the setup: a missing permission, an unknown role, tag or flow
            └── Unauthorized   ... because of the credentials (the token or API key)
"""

from __future__ import annotations

import httpx

from connectors.base import StepResult


class WireError(Exception):
    """A request the other side did not carry out (or may have, see ``maybe_delivered``)."""

    retryable_by_default = False

    def __init__(
        self,
        error: str,
        detail: str,
        *,
        retryable: bool | None = None,
        maybe_delivered: bool = False,
        response: httpx.Response | None = None,
    ):
        super().__init__(f"{error}: {detail}")
        self.error = error  # named error class, e.g. "discord.forbidden"
        self.detail = detail  # human text for the admin (never a secret)
        self.retryable = self.retryable_by_default if retryable is None else retryable
        # For a request that must not be repeated: did it possibly reach the other side?
        self.maybe_delivered = maybe_delivered
        self.response = response  # the reply judged a failure; None when none came back

    @property
    def result(self) -> StepResult:
        """The failed step result this error stands for."""
        return StepResult.failed(
            self.error,
            self.detail,
            retryable=self.retryable,
            maybe_delivered=self.maybe_delivered,
        )


class Unavailable(WireError):
    """The other side could not answer: a 5xx, a timeout, a dropped connection, an unreadable reply."""

    retryable_by_default = True


class RateLimited(WireError):
    """Still rate limited after every wait one call may spend: the step is handed back to retry later."""

    retryable_by_default = True


class Rejected(WireError):
    """The other side refused the request (a 4xx): sending it again unchanged cannot help."""


class Misconfigured(Rejected):
    """Refused because of the setup, not the request: a permission, an id or a name an admin must fix."""


class Unauthorized(Misconfigured):
    """The credentials were refused: nothing works until an admin fixes the token or API key."""
