"""The ledger step: a redelivery gets the first answer, and never an apology when the first
delivery's instance stopped between committing the change and writing its answer."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bot.app import build_app
from bot.auth import BotSettings
from bot.pipeline import STEPS
from bot.steps import errors, identity, ledger, references, request, routing, tenancy
from bot.steps.ledger import services_carrying
from cards.actions import Verb
from services.conversations import ActivityLedger
from services.domain import LicenceProduct
from tests.botkit import BotHarness, card_text
from tests.conftest import PROVIDER
from tests.support.fixtures import ServeBot

ADA = {
    "display_name": "Ada Lovelace",
    "email": "ada@contoso.com",
    "licence": "essentials",
    "number_mode": "auto",
    "extension_mode": "auto",
}


class _StoppedBeforeAnswering(ActivityLedger):
    """An instance stopped right after its change committed: its answer is never written."""

    def keep(self, key: str, response: object) -> None:
        return None


def test_the_pipeline_lists_its_steps_in_order() -> None:
    assert (
        errors.contain,
        request.read,
        references.remember,
        identity.identify,
        tenancy.choose_enterprise,
        ledger.once,
        routing.route,
    ) == STEPS


async def test_the_claim_rides_only_in_transactions_of_the_services_handed_to_the_turn(
    harness: BotHarness,
) -> None:
    services = harness.services
    key = "tenant|conversation|activity-1"
    with services.ledger.claiming(key) as claim:
        # A write made through the plain services, even inside the claim, carries nothing.
        await services.licences.set_pool(PROVIDER, harness.ent, LicenceProduct.BASIC, 7)
        assert not claim.claimed and await services.ledger.peek(key) is None
        # The services handed to the turn carry it into their first write transaction, once.
        carrying = services_carrying(services, claim)
        assert carrying.db.claim is claim and services.db.claim is None
        await carrying.licences.set_pool(PROVIDER, harness.ent, LicenceProduct.BASIC, 8)
        assert claim.claimed and await services.ledger.peek(key) is not None
        await carrying.licences.set_pool(PROVIDER, harness.ent, LicenceProduct.BASIC, 9)
    assert carrying.ledger is services.ledger


async def test_a_redelivery_after_the_first_instance_stopped_shows_the_user_it_created(
    harness: BotHarness, serve_bot: ServeBot, bot_settings: BotSettings
) -> None:
    services = harness.services
    activity = harness.teams.card_action(
        Verb.USER_CREATE_SUBMIT.value, {"verb": "user.create.submit", **ADA}
    )
    stopped = await serve_bot(
        build_app(replace(services, ledger=_StoppedBeforeAnswering(services.db)), bot_settings)
    )
    first = (await stopped.post(activity)).json()["value"]
    assert "Ada Lovelace was created" in card_text(first)

    # Teams retries on another instance, which knows only what the database holds.
    other = await serve_bot(
        build_app(replace(services, ledger=ActivityLedger(services.db)), bot_settings)
    )
    retried = (await other.post(activity)).json()["value"]

    # answered from the committed change: the user it created, not an apology
    assert "Ada Lovelace was created" in card_text(retried) and "Sorry" not in card_text(retried)
    page = await services.directory.page(harness.ent, page_size=10)
    assert [user.email for user in page.items] == ["ada@contoso.com"]


async def test_deliveries_in_one_process_wait_for_the_first_answer(harness: BotHarness) -> None:
    activity = harness.teams.card_action(
        Verb.USER_CREATE_SUBMIT.value, {"verb": "user.create.submit", **ADA}
    )
    responses = await asyncio.gather(*(harness.client.post(activity) for _ in range(4)))
    answers = [response.json()["value"] for response in responses]
    assert all(answer == answers[0] for answer in answers)
    assert "Ada Lovelace was created" in card_text(answers[0])


async def test_a_redelivered_change_its_builder_cannot_find_says_it_was_done(
    harness: BotHarness, serve_bot: ServeBot, bot_settings: BotSettings
) -> None:
    services = harness.services
    created = await harness.act(Verb.USER_CREATE_SUBMIT, ADA)
    [user] = (await services.directory.page(harness.ent, page_size=10)).items
    assert "Ada Lovelace was created" in card_text(created)
    activity = harness.teams.card_action(
        Verb.HUNT_GROUP_CREATE.value,
        {"verb": Verb.HUNT_GROUP_CREATE.value, "user_id": user.id, "new_group": "Support"},
    )
    stopped = await serve_bot(
        build_app(replace(services, ledger=_StoppedBeforeAnswering(services.db)), bot_settings)
    )
    first = card_text((await stopped.post(activity)).json()["value"])
    assert "Hunt group Support was created" in first
    # Someone deletes the group before Teams retries: nothing left to answer from.
    [group] = await services.hunt_groups.all(harness.ent)
    await services.hunt_groups.delete(PROVIDER, harness.ent, group.id)
    other = await serve_bot(
        build_app(replace(services, ledger=ActivityLedger(services.db)), bot_settings)
    )
    retried = (await other.post(activity)).json()["value"]
    assert "already did this" in card_text(retried) and "Sorry" not in card_text(retried)
    assert await services.hunt_groups.all(harness.ent) == []  # not created a second time
