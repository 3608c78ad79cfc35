"""The interface every PBX implements, and the values it reads back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.exc import DBAPIError

from services.errors import DomainError
from services.pbx.lines import GroupLine, PbxLine

if TYPE_CHECKING:
    from services.pbx.drift import Drift

MAX_ERROR = 300


class RouteKind(StrEnum):
    """What a dialplan route answers: an extension, or a direct number from the trunk."""

    EXTENSION = "extension"
    DDI = "ddi"


@dataclass(frozen=True)
class PbxRoute:
    """A number or extension in the enterprise's dialplan and what it rings.

    `endpoint` is the Switchboard endpoint rung, or None when the route does something else
    (`target` then says what).
    """

    kind: RouteKind
    key: str
    endpoint: str | None
    target: str


@dataclass(frozen=True)
class PbxInventory:
    """What the PBX holds for one enterprise: its Switchboard endpoints and its routes."""

    lines: dict[str, PbxLine] = field(default_factory=dict)
    routes: dict[tuple[RouteKind, str], PbxRoute] = field(default_factory=dict)


class PbxError(DomainError):
    """The PBX could not be reached or refused a change; `summary` is safe to store and show."""

    def __init__(self, summary: str) -> None:
        super().__init__(f"The PBX did not answer or refused the change ({summary}).")
        self.summary = summary


class PbxBackend(Protocol):
    """A PBX that Switchboard provisions. Every write is one transaction on the PBX."""

    name: str

    async def provision(self, line: PbxLine) -> None:
        """Make the PBX hold exactly this line (endpoint, routes, caller ID, hunt groups).

        A route the line claims is taken over even if another endpoint held it.
        """
        ...

    async def remove(self, enterprise_id: int, endpoint: str) -> None:
        """Take the endpoint, every route to it and its hunt-group memberships off the PBX."""
        ...

    async def provision_group(self, group: GroupLine) -> None:
        """Make the PBX hold this hunt group: its queue, strategy and the routes to it."""
        ...

    async def remove_group(self, enterprise_id: int, queue: str) -> None:
        """Take a hunt group's queue, members and routes off the PBX."""
        ...

    async def drift(
        self,
        enterprise_id: int,
        lines: Sequence[PbxLine],
        groups: Sequence[GroupLine],
        names: Mapping[str, str],
    ) -> list[Drift]:
        """Every difference between these lines and groups and what the PBX holds."""
        ...

    async def repair(
        self,
        enterprise_id: int,
        lines: Sequence[PbxLine],
        groups: Sequence[GroupLine],
        found: Sequence[Drift],
    ) -> None:
        """Make the PBX hold these lines and groups again where `found` says it does not."""
        ...

    async def set_hunt_groups(
        self, enterprise_id: int, endpoint: str, member_name: str, queues: tuple[str, ...]
    ) -> None:
        """Make the endpoint a member of exactly these hunt groups (PBX queues)."""
        ...

    async def remove_route(self, enterprise_id: int, kind: RouteKind, key: str) -> None:
        """Delete one number or extension from the enterprise's dialplan."""
        ...

    async def read(self, enterprise_id: int, endpoint: str) -> PbxLine | None:
        """What the PBX holds for one endpoint, or None when it has no such endpoint."""
        ...

    async def inventory(self, enterprise_id: int) -> PbxInventory:
        """Every Switchboard endpoint and route the PBX holds for the enterprise."""
        ...

    async def close(self) -> None:
        """Release the PBX connections."""
        ...


def describe_error(error: BaseException) -> str:
    """A one-line account of a PBX failure, without SQL or parameters (they may hold secrets)."""
    if isinstance(error, PbxError):
        text = error.summary
    elif isinstance(error, DBAPIError):
        original = error.orig if error.orig is not None else error
        detail = str(original).strip().splitlines()[0] if str(original).strip() else ""
        text = f"{type(original).__name__}: {detail}" if detail else type(original).__name__
    elif isinstance(error, TimeoutError | asyncio.TimeoutError):
        text = "the PBX did not answer in time"
    elif isinstance(error, OSError):
        text = f"{type(error).__name__}: {error.strerror or error}"
    else:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return text[:MAX_ERROR]
