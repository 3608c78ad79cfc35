"""What the PBX must hold for a user: one line, read from the directory as it is now.

Pushes always carry a user's whole current line, never a delta, so a replayed or
reordered push converges on the directory's state.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services import callerid
from services.domain import CallerIdMode
from services.models import (
    Enterprise,
    Extension,
    HuntGroup,
    HuntGroupMember,
    PhoneNumber,
    SipCredential,
    User,
)

PREFIX = "sb"
# Asterisk's ps_endpoints.callerid is VARCHAR(40): '"Name" <+442079460000>' must fit.
CALLERID_WIDTH = 40
# Quotes and angle brackets break the header; ';' splits Asterisk's set_var; '$' starts a
# dialplan substitution in realtime rows; control characters break SIP.
_UNSAFE_IN_NAME = re.compile(r'["<>\\;$\x00-\x1f\x7f]')
_ENDPOINT = re.compile(rf"^{PREFIX}-e(\d+)-u(\d+)$")


def endpoint_id(enterprise_id: int, user_id: int) -> str:
    """The PBX endpoint (and SIP user name) of a user: stable for the user's whole life."""
    return f"{PREFIX}-e{enterprise_id}-u{user_id}"


def endpoint_prefix(enterprise_id: int) -> str:
    """What every endpoint id of the enterprise starts with."""
    return f"{PREFIX}-e{enterprise_id}-u"


def parse_endpoint(endpoint: str) -> tuple[int, int] | None:
    """The (enterprise id, user id) a Switchboard endpoint id names, or None for others."""
    match = _ENDPOINT.match(endpoint)
    return (int(match.group(1)), int(match.group(2))) if match else None


def extension_context(enterprise_id: int) -> str:
    """The realtime context of the enterprise's extensions: extension -> who it rings."""
    return f"{PREFIX}-e{enterprise_id}-ext"


def ddi_context(enterprise_id: int) -> str:
    """The realtime context of the enterprise's direct numbers (DDIs), in E.164."""
    return f"{PREFIX}-e{enterprise_id}-ddi"


def ring_context(enterprise_id: int) -> str:
    """The realtime context holding, per user, the legs a call to them rings."""
    return f"{PREFIX}-e{enterprise_id}-ring"


def identity_context(enterprise_id: int) -> str:
    """The realtime context that gives a Teams caller (by number) their caller ID."""
    return f"{PREFIX}-e{enterprise_id}-id"


def dial_context(enterprise_id: int) -> str:
    """The static context the enterprise's callers dial from (desk phones and Teams)."""
    return f"{PREFIX}-e{enterprise_id}-dial"


def outbound_context(enterprise_id: int) -> str:
    """The static context that sends the enterprise's calls to the PSTN trunk."""
    return f"{PREFIX}-e{enterprise_id}-out"


def ring_key(user_id: int) -> str:
    """The extension of a user's ring row (digits alone could clash with real extensions)."""
    return f"u{user_id}"


def queue_name(enterprise_id: int, group_id: int) -> str:
    """The PBX queue that implements a hunt group."""
    return f"{PREFIX}-e{enterprise_id}-g{group_id}"


@dataclass(frozen=True)
class CallerIdLine:
    """Caller ID as the PBX carries it: name and number, privacy, and the asserted identity."""

    name: str
    number: str
    private: bool
    send_pai: bool
    pai_number: str | None

    def rendered(self) -> str:
        """The caller ID in Asterisk's form: '"Name" <number>'."""
        return f'"{self.name}" <{self.number}>'


@dataclass(frozen=True)
class SipAuth:
    """A desk phone's digest credentials as the PBX checks them (never the password)."""

    username: str
    realm: str
    md5_cred: str

    def __repr__(self) -> str:
        return f"SipAuth(username={self.username!r}, realm={self.realm!r}, md5_cred='***')"


@dataclass(frozen=True)
class PbxLine:
    """Everything the PBX holds for one user."""

    endpoint: str
    enterprise_id: int
    user_id: int
    extension: str | None
    ddi: str | None
    caller_id: CallerIdLine
    sip: SipAuth | None
    hunt_groups: tuple[str, ...]


@dataclass(frozen=True)
class GroupLine:
    """Everything the PBX holds for one hunt group: its queue and the numbers that reach it."""

    enterprise_id: int
    group_id: int
    queue: str
    strategy: str
    extension: str | None
    ddi: str | None


def fit_caller_name(name: str, number: str) -> str:
    """A caller name without characters that break the header, short enough for Asterisk."""
    clean = " ".join(_UNSAFE_IN_NAME.sub(" ", name).split())
    room = CALLERID_WIDTH - len(number) - len('"" <>')
    return clean[: max(room, 0)].rstrip() or "Unknown"


def caller_id_line(user: User, enterprise: Enterprise, number: str | None) -> CallerIdLine:
    """The user's caller ID settings mapped to what the PBX presents and asserts."""
    view = callerid.describe(user, number, enterprise.main_number)
    private = view.mode is CallerIdMode.ANONYMOUS
    if private:
        # Withheld from the called party, but the network still learns who calls.
        shown = view.pai_number or number or enterprise.main_number
    else:
        shown = view.presented_number or enterprise.main_number
    return CallerIdLine(
        name=fit_caller_name(user.caller_name or user.display_name, shown),
        number=shown,
        private=private,
        send_pai=view.send_pai,
        pai_number=view.pai_number,
    )


async def desired_lines(
    session: AsyncSession, enterprise: Enterprise, user_ids: Collection[int] | None = None
) -> dict[int, PbxLine]:
    """The lines the PBX must hold for these users (all of the enterprise's when None).

    Only users with a calling licence are on the PBX; anyone else maps to no line.
    """
    query = (
        select(User, PhoneNumber.e164, Extension.number)
        .outerjoin(PhoneNumber, PhoneNumber.user_id == User.id)
        .outerjoin(Extension, Extension.user_id == User.id)
        .where(User.enterprise_id == enterprise.id, User.licence.is_not(None))
        .order_by(User.id)
    )
    groups_query = (
        select(HuntGroupMember.user_id, HuntGroupMember.group_id)
        .join(HuntGroup, HuntGroup.id == HuntGroupMember.group_id)
        .where(HuntGroup.enterprise_id == enterprise.id)
    )
    credentials_query = (
        select(SipCredential)
        .join(User, User.id == SipCredential.user_id)
        .where(User.enterprise_id == enterprise.id)
    )
    if user_ids is not None:
        wanted = list(user_ids)
        query = query.where(User.id.in_(wanted))
        groups_query = groups_query.where(HuntGroupMember.user_id.in_(wanted))
        credentials_query = credentials_query.where(SipCredential.user_id.in_(wanted))
    groups: dict[int, list[str]] = {}
    for user_id, group_id in await session.execute(groups_query):
        groups.setdefault(user_id, []).append(queue_name(enterprise.id, group_id))
    credentials = {c.user_id: c for c in (await session.execute(credentials_query)).scalars()}
    lines: dict[int, PbxLine] = {}
    for user, number, extension in await session.execute(query):
        endpoint = endpoint_id(enterprise.id, user.id)
        credential = credentials.get(user.id)
        lines[user.id] = PbxLine(
            endpoint=endpoint,
            enterprise_id=enterprise.id,
            user_id=user.id,
            extension=str(extension) if extension is not None else None,
            ddi=number,
            caller_id=caller_id_line(user, enterprise, number),
            sip=SipAuth(credential.username, credential.realm, credential.md5_cred)
            if credential is not None
            else None,
            hunt_groups=tuple(sorted(groups.get(user.id, []))),
        )
    return lines


async def desired_groups(
    session: AsyncSession, enterprise: Enterprise, group_ids: Collection[int] | None = None
) -> dict[int, GroupLine]:
    """The hunt groups the PBX must hold (all of the enterprise's when None)."""
    query = (
        select(HuntGroup, Extension.number, PhoneNumber.e164)
        .outerjoin(Extension, Extension.hunt_group_id == HuntGroup.id)
        .outerjoin(PhoneNumber, PhoneNumber.hunt_group_id == HuntGroup.id)
        .where(HuntGroup.enterprise_id == enterprise.id)
        .order_by(HuntGroup.id)
    )
    if group_ids is not None:
        query = query.where(HuntGroup.id.in_(list(group_ids)))
    return {
        group.id: GroupLine(
            enterprise_id=enterprise.id,
            group_id=group.id,
            queue=queue_name(enterprise.id, group.id),
            strategy=group.strategy,
            extension=str(extension) if extension is not None else None,
            ddi=ddi,
        )
        for group, extension, ddi in await session.execute(query)
    }
