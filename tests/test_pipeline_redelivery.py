"""A redelivery of a change that committed on an instance which then stopped (before it could
keep its answer) is answered from the committed change, for every verb that changes
something: the card the first delivery would have shown, never "already did this" or an
apology, and never the change made twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from bot.app import build_app
from bot.auth import BotSettings
from cards.actions import Verb
from services.conversations import ActivityLedger
from services.domain import AdminRole, LicenceProduct
from services.inventory import AUTO
from services.users import NewUser
from services.views import UserView
from tests.botkit import BotHarness, card_text
from tests.conftest import PROVIDER
from tests.support.fixtures import ServeBot

ALREADY = "already did this"
APOLOGY = "Sorry"


class _StoppedBeforeAnswering(ActivityLedger):
    """An instance stopped right after its change committed: its answer is never written."""

    def keep(self, key: str, response: object) -> None:
        return None


@dataclass(frozen=True)
class Case:
    """A changing verb: how to prepare its payload, what its answer says, what stays once."""

    verb: Verb
    prepare: Callable[[BotHarness, UserView], Awaitable[dict[str, Any]]]
    says: str
    done_once: Callable[[BotHarness, UserView], Awaitable[bool]]


async def _ada(harness: BotHarness, licence: LicenceProduct | None) -> UserView:
    return await harness.services.users.create(
        PROVIDER,
        harness.ent,
        NewUser("Ada Lovelace", "ada@contoso.com", licence, number=AUTO if licence else None),
    )


def _ids(user: UserView) -> dict[str, Any]:
    return {"user_id": user.id, "version": user.version}


async def _caller_id(harness: BotHarness, user: UserView) -> dict[str, Any]:
    return {**_ids(user), "mode": "company_main"}


async def _no_payload_change(harness: BotHarness, user: UserView) -> dict[str, Any]:
    return _ids(user)


async def _a_free_number(harness: BotHarness, user: UserView) -> dict[str, Any]:
    free = await harness.services.inventory.search_free(harness.ent, page_size=1)
    return {**_ids(user), "number": free.items[0], "confirmed": True}


async def _confirmed(harness: BotHarness, user: UserView) -> dict[str, Any]:
    return {**_ids(user), "confirmed": True}


async def _enable(harness: BotHarness, user: UserView) -> dict[str, Any]:
    return {"users": str(user.id), "licence": "basic"}


async def _groups(harness: BotHarness, user: UserView) -> dict[str, Any]:
    sales = await harness.services.hunt_groups.create(PROVIDER, harness.ent, "Sales")
    return {"user_id": user.id, "groups": str(sales.id)}


async def _new_group(harness: BotHarness, user: UserView) -> dict[str, Any]:
    return {"user_id": user.id, "new_group": "Support"}


async def _issue(harness: BotHarness, user: UserView) -> dict[str, Any]:
    return {"user_id": user.id}


async def _revoke(harness: BotHarness, user: UserView) -> dict[str, Any]:
    await harness.services.desk_phones.issue(PROVIDER, harness.ent, user.id)
    return {"user_id": user.id}


async def _version_moved_once(harness: BotHarness, user: UserView) -> bool:
    return (await harness.services.users.get(harness.ent, user.id)).version == user.version + 1


async def _licensed_once(harness: BotHarness, user: UserView) -> bool:
    pools = {p.product: p for p in await harness.services.licences.pools(harness.ent)}
    after = await harness.services.users.get(harness.ent, user.id)
    return after.licence is LicenceProduct.BASIC and pools[LicenceProduct.BASIC].used == 1


async def _gone(harness: BotHarness, user: UserView) -> bool:
    page = await harness.services.directory.page(harness.ent, page_size=10)
    return page.total == 0


async def _in_sales(harness: BotHarness, user: UserView) -> bool:
    groups = await harness.services.hunt_groups.of_user(harness.ent, user.id)
    return [group.name for group in groups] == ["Sales"]


async def _one_support(harness: BotHarness, user: UserView) -> bool:
    groups = await harness.services.hunt_groups.all(harness.ent)
    return [group.name for group in groups] == ["Support"]


async def _has_login(harness: BotHarness, user: UserView) -> bool:
    return await harness.services.desk_phones.has_desk_phone(harness.ent, user.id)


async def _has_no_login(harness: BotHarness, user: UserView) -> bool:
    return not await harness.services.desk_phones.has_desk_phone(harness.ent, user.id)


async def _edit(harness: BotHarness, user: UserView) -> dict[str, Any]:
    return {**_ids(user), "display_name": "Ada King", "email": "ada@contoso.com"}


async def _as_global_admin(harness: BotHarness, user: UserView) -> dict[str, Any]:
    await harness.services.enterprises.grant(
        PROVIDER,
        aad_object_id=harness.teams.user.aad_object_id,
        role=AdminRole.GLOBAL_ADMIN,
        enterprise_id=harness.ent,
        display_name=harness.teams.user.name,
    )
    return {}


async def _one_run(harness: BotHarness, user: UserView) -> bool:
    overview = await harness.services.syncs.overview(harness.ent)
    return overview.open_run is not None and overview.last_run == overview.open_run


CASES = {
    "sync requested": (
        LicenceProduct.ESSENTIALS,
        Case(Verb.SYNC_START, _as_global_admin, "Sync started", _one_run),
    ),
    "user edited": (
        LicenceProduct.ESSENTIALS,
        Case(Verb.USER_EDIT_SUBMIT, _edit, "Ada King", _version_moved_once),
    ),
    "caller ID": (
        LicenceProduct.ESSENTIALS,
        Case(Verb.CALLER_ID_SUBMIT, _caller_id, "Caller ID saved", _version_moved_once),
    ),
    "next free number": (
        LicenceProduct.ESSENTIALS,
        Case(Verb.NUMBER_AUTO, _confirmed, "is now Ada Lovelace's number", _version_moved_once),
    ),
    "number picked": (
        LicenceProduct.ESSENTIALS,
        Case(
            Verb.NUMBER_ASSIGN, _a_free_number, "is now Ada Lovelace's number", _version_moved_once
        ),
    ),
    "licence enabled": (
        None,
        Case(Verb.UNLICENSED_ENABLE, _enable, "Ada Lovelace", _licensed_once),
    ),
    "user removed": (
        LicenceProduct.ESSENTIALS,
        Case(Verb.USER_REMOVE, _confirmed, "removed", _gone),
    ),
    "hunt groups saved": (
        LicenceProduct.ESSENTIALS,
        Case(Verb.HUNT_GROUPS_SAVE, _groups, "Hunt groups saved: Sales", _in_sales),
    ),
    "hunt group created": (
        LicenceProduct.ESSENTIALS,
        Case(Verb.HUNT_GROUP_CREATE, _new_group, "Hunt group Support was created", _one_support),
    ),
    "desk phone issued": (
        LicenceProduct.ESSENTIALS,
        Case(Verb.DESK_PHONE_ISSUE, _issue, "This login was already issued", _has_login),
    ),
    "desk phone revoked": (
        LicenceProduct.ESSENTIALS,
        Case(Verb.DESK_PHONE_REVOKE, _revoke, "Desk phone login revoked", _has_no_login),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_a_redelivery_after_the_instance_stopped_is_answered_from_the_change(
    name: str, harness: BotHarness, serve_bot: ServeBot, bot_settings: BotSettings
) -> None:
    licence, case = CASES[name]
    services = harness.services
    user = await _ada(harness, licence)
    data = await case.prepare(harness, user)
    activity = harness.teams.card_action(case.verb.value, {"verb": case.verb.value, **data})
    stopped = await serve_bot(
        build_app(replace(services, ledger=_StoppedBeforeAnswering(services.db)), bot_settings)
    )
    first = card_text((await stopped.post(activity)).json()["value"])
    assert APOLOGY not in first and ALREADY not in first, first

    # Teams retries on another instance, which knows only what the database holds.
    other = await serve_bot(
        build_app(replace(services, ledger=ActivityLedger(services.db)), bot_settings)
    )
    retried = card_text((await other.post(activity)).json()["value"])

    assert case.says in retried, retried
    assert APOLOGY not in retried and ALREADY not in retried, retried
    assert await case.done_once(harness, user)
