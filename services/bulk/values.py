"""What a bulk import is and says, as plain values: the states of an import and its rows, a
row's plan, the preview and the progress. The cards show these without loading the database."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class ImportStatus(enum.StrEnum):
    """Where a bulk import stands."""

    APPLYING = "applying"
    FINISHED = "finished"


class RowAction(enum.StrEnum):
    """What a row of the file does to the directory."""

    CREATE = "create"
    UPDATE = "update"
    REMOVE = "remove"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


class RowStatus(enum.StrEnum):
    """A row's fate in an apply."""

    PENDING = "pending"
    APPLIED = "applied"
    FAILED = "failed"
    REJECTED = "rejected"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class RowPlan:
    """One row of the file as the preview sees it: what it does, or why it cannot."""

    line: int
    email: str
    action: RowAction
    reasons: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()
    plan: dict[str, Any] = field(default_factory=dict)
    order: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def reason(self) -> str:
        """Why the row is rejected, in one line."""
        return " ".join(self.reasons)


@dataclass(frozen=True)
class Preview:
    """What applying a file would do: per row, in the file's order; `token` names this very
    preview, and an apply with an older token is refused."""

    enterprise_id: int
    token: str
    rows: list[RowPlan]
    notes: list[str]

    def count(self, action: RowAction) -> int:
        """How many rows do this."""
        return sum(1 for row in self.rows if row.action is action)

    @property
    def rejected(self) -> list[RowPlan]:
        """The rows that cannot be applied, with their reasons."""
        return [row for row in self.rows if row.action is RowAction.REJECTED]

    @property
    def changing(self) -> list[RowPlan]:
        """The rows that change the directory."""
        return [row for row in self.rows if row.action in _CHANGING]

    def summary(self) -> str:
        """One line: how many rows create, update, remove, leave unchanged, are rejected."""
        return (
            f"{self.count(RowAction.CREATE)} to create, {self.count(RowAction.UPDATE)} to update, "
            f"{self.count(RowAction.REMOVE)} to remove, {self.count(RowAction.UNCHANGED)} "
            f"unchanged, {self.count(RowAction.REJECTED)} rejected"
        )


_CHANGING = (RowAction.CREATE, RowAction.UPDATE, RowAction.REMOVE)


@dataclass(frozen=True)
class ImportProgress:
    """How far an apply has got."""

    import_id: int
    enterprise_id: int
    status: ImportStatus
    total: int
    pending: int
    applied: int
    failed: int
    rejected: int
    unchanged: int

    @property
    def finished(self) -> bool:
        """Whether every row has been applied or has failed."""
        return self.status is ImportStatus.FINISHED

    def summary(self) -> str:
        """One line an admin reads."""
        state = "finished" if self.finished else f"{self.pending} rows still to apply"
        return (
            f"{self.applied} applied, {self.failed} failed, {self.rejected} rejected in the "
            f"preview, {self.unchanged} unchanged; {state}."
        )
