"""The composed app: a user created through a card reaches the PBX by itself, through the
pusher the app starts and stops."""

from __future__ import annotations

import asyncio

import pytest

from bot.app import BACKGROUND_KEY, build_app, start_background_work
from cards.actions import Verb
from services.container import Services
from services.domain import AdminRole
from services.pbx.lines import endpoint_id
from tests.conftest import PROVIDER, seed_enterprise
from tests.support.activities import DEFAULT_TENANT_ID, DEFAULT_USER


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_created_user_is_pushed_to_the_pbx_by_the_running_app(
    services: Services, serve_bot, teams, bot_settings
) -> None:
    ent = await seed_enterprise(services, tenant_id=DEFAULT_TENANT_ID)
    await services.enterprises.grant(
        PROVIDER,
        aad_object_id=DEFAULT_USER.aad_object_id,
        role=AdminRole.ENTERPRISE_ADMIN,
        enterprise_id=ent,
    )
    app = build_app(services, bot_settings)
    start_background_work(app, services)
    client = await serve_bot(app)
    data = {
        "verb": Verb.USER_CREATE_SUBMIT.value,
        "display_name": "Ada Lovelace",
        "email": "ada@contoso.com",
        "licence": "essentials",
        "number_mode": "auto",
        "extension_mode": "auto",
    }
    response = await client.post(teams.card_action(data["verb"], data))
    assert response.status == 200
    [user] = (await services.directory.page(ent)).items
    pbx = app[BACKGROUND_KEY].pbx
    line = None
    for _ in range(100):
        line = await pbx.backend.read(ent, endpoint_id(ent, user.id))
        if line is not None:
            break
        await asyncio.sleep(0.05)
    assert line is not None, "the pusher never wrote the user's line"
    assert (line.ddi, line.extension) == (user.number, str(user.extension))
    status = await services.pbx_statuses.of_user(ent, user.id)
    assert "up to date" in status.summary
