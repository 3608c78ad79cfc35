"""Domain errors: each carries a message an admin can read, and the form field it concerns."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal the admin can act on; `message` is safe to show, `field` names the input."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class OutsideUnreachableError(DomainError):
    """A service outside Switchboard that the action needs (Microsoft) cannot be reached or is
    failing right now: nothing was changed, and trying again later will do."""


class ValidationError(DomainError):
    """The input itself is wrong (malformed number, bad e-mail, out-of-range extension)."""


class NotFoundError(DomainError):
    """The thing asked for does not exist in this enterprise."""


class ConflictError(DomainError):
    """Someone else changed the record first, or the value is already taken."""


class NotEnoughSubscriptionsError(DomainError):
    """The licence pool has no free licence."""


class NoFreeNumberError(DomainError):
    """The enterprise's inventory has no free number (or extension) left."""


class PermissionDeniedError(DomainError):
    """The admin's role does not allow this action."""


class BulkRefusedError(DomainError):
    """A bulk request was refused as a whole; `reasons` maps each refused item to its reason."""

    def __init__(self, message: str, reasons: dict[int, str]) -> None:
        super().__init__(message)
        self.reasons = reasons
