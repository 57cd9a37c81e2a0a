"""Errors the package raises on purpose. Each message names the problem and the fix."""

from __future__ import annotations


class InceptionHubError(Exception):
    """Base class: anything the user can act on."""


class UnknownHandleError(InceptionHubError, ValueError):
    """A model handle that is not in the catalog."""


class InputError(InceptionHubError, ValueError):
    """An array passed to a module has the wrong shape, dtype or value range."""


class CheckpointError(InceptionHubError):
    """A checkpoint that cannot be read, or is not the one the model needs."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint whose variables do not match the network."""

    def __init__(
        self,
        message: str,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []


class WeightsUnavailableError(InceptionHubError):
    """The weights are neither cached nor downloadable (offline, or the download failed)."""


class ImageDecodeError(InceptionHubError, ValueError):
    """An image file that cannot be read; carries the path and a human reason."""

    def __init__(self, path: str | None, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)
