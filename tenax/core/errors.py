"""Errors with messages meant for a person: each says what went wrong and what to do."""

from __future__ import annotations


class TenaxError(Exception):
    """Base class. ``str(err)`` is shown to the user verbatim by the CLI."""


class ConfigError(TenaxError):
    """Bad CLI argument, bad config file, bad TENAX_DB, missing API key, unknown model..."""


class DockerUnavailable(TenaxError):
    """No Docker engine answers."""


class SandboxError(TenaxError):
    """The container died or could not be created."""


class ProviderError(TenaxError):
    """A model call failed.

    ``retryable``: another attempt of the same call may succeed (False once retries are used up).
    ``transient``: the cause is the provider's or the network's state, not the request (overload,
    5xx, connection trouble), so an unattended run may wait it out. A request the server calls
    invalid is neither.
    ``unreachable``: every attempt failed to connect at all (connection refused, DNS failure): a
    mistyped base URL looks like this, so a goal whose very first call gets it should fail at once.
    ``retry_after``: the server's own wait, in seconds, when it gave one (a long one is a usage limit)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 transient: bool = False, attempts: list | None = None, unreachable: bool = False,
                 retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
        self.retryable = retryable
        self.transient = transient
        self.attempts = attempts or []
        self.unreachable = unreachable


class ContextTooLong(ProviderError):
    """The provider refused the request because the prompt exceeds the context window."""


class ModelSwitchRefused(TenaxError):
    """Switching the main session's model mid-goal breaks the prompt cache."""
