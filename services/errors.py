"""The one base of every error whose message is written for the person using the app.

Pages and HTTP routes catch `UserError` and show `.message`; they never special-case the service that raised
it. Subclasses add what their callers switch on (`AuthError.reason`, `ProviderError.kind`,
`RateLimited.retry_after_s`), never a different way to get the text.
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose `message` is safe to show as it is: plain words, no secrets, no stack trace."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
