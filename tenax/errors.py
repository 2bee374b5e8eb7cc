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
    """A model call failed. ``retryable`` is False once retries are exhausted or for 4xx."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class ContextTooLong(ProviderError):
    """The provider refused the request because the prompt exceeds the context window."""


class ModelSwitchRefused(TenaxError):
    """Switching the main session's model mid-goal breaks the prompt cache."""
