"""The /api/messages endpoint: who gets in, what comes back, and how failures look."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from botbuilder.core import ActivityHandler, InvokeResponse, TurnContext
from botbuilder.schema import (
    Activity,
    AdaptiveCardInvokeResponse,
    AdaptiveCardInvokeValue,
    ConversationParameters,
)

from bot.adapter import reference_id
from bot.auth import BotSettings
from bot.http import BOT_ADAPTER_KEY
from bot.request_context import current_request_id
from tests.bench.echo_baseline import start_echo_bot
from tests.support.activities import TeamsActivities
from tests.support.botclient import RunningBot, ServeBot
from tests.support.connector import FakeConnector
from tests.support.identity import (
    BAD_AUTHORIZATION_KINDS,
    ChannelTokenMinter,
    IdentityStandIns,
)

SEARCH_RESPONSE_TYPE = "application/vnd.microsoft.search.searchResponse"
SECRET_DETAIL = "connection to pbx-db.internal:5432 refused for user provisioning"


class RecordingEchoBot(ActivityHandler):  # type: ignore[misc]
    """Echoes messages, answers invokes, and remembers every turn it saw."""

    def __init__(self) -> None:
        self.turns: list[Activity] = []
        self.reference_ids: list[str] = []
        self.request_ids: list[str | None] = []
        self.connector_clients: list[object] = []
        self.failure: Exception | None = None

    async def on_turn(self, turn_context: TurnContext) -> None:
        self.turns.append(turn_context.activity)
        self.reference_ids.append(reference_id(turn_context))
        self.request_ids.append(current_request_id())
        self.connector_clients.append(
            turn_context.turn_state.get(turn_context.adapter.BOT_CONNECTOR_CLIENT_KEY)
        )
        if self.failure is not None:
            raise self.failure
        await super().on_turn(turn_context)

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity(f"echo: {turn_context.activity.text}")

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        if turn_context.activity.name == "application/search":
            query = turn_context.activity.value["queryText"]
            return InvokeResponse(
                status=200,
                body={
                    "statusCode": 200,
                    "type": SEARCH_RESPONSE_TYPE,
                    "value": {"results": [{"title": f"+44 20 7946 {query}", "value": query}]},
                },
            )
        return await super().on_invoke_activity(turn_context)

    async def on_adaptive_card_invoke(
        self, turn_context: TurnContext, invoke_value: AdaptiveCardInvokeValue
    ) -> AdaptiveCardInvokeResponse:
        return AdaptiveCardInvokeResponse(
            status_code=200,
            type="application/vnd.microsoft.card.adaptive",
            value=done_card(invoke_value.action["verb"]),
        )


def done_card(verb: str) -> dict[str, Any]:
    return {
        "type": "AdaptiveCard",
        "version": "1.5",
        "body": [{"type": "TextBlock", "text": f"done: {verb}"}],
    }


@pytest.fixture
def echo_bot() -> RecordingEchoBot:
    return RecordingEchoBot()


@pytest.mark.parametrize("kind", BAD_AUTHORIZATION_KINDS)
async def test_every_bad_token_is_rejected_with_401_before_the_bot_runs(
    kind: str,
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    teams: TeamsActivities,
    token_minter: ChannelTokenMinter,
    fake_connector: FakeConnector,
) -> None:
    bot = await serve_bot(echo_bot)

    response = await bot.post(
        teams.message("list free numbers"),
        authorization=token_minter.bad_authorization_headers()[kind],
    )

    assert response.status == 401, response.text
    assert response.json() == {"error": "unauthorized"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert echo_bot.turns == []
    assert fake_connector.activities == []


async def test_a_valid_token_runs_the_turn_and_the_reply_reaches_the_connector_authenticated(
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    identity: IdentityStandIns,
) -> None:
    fake_connector.require_authorization = identity.authority.accepts
    bot = await serve_bot(echo_bot)
    activity = teams.message("hello")

    response = await bot.post(activity)

    assert response.status == 200, response.text
    reply = await fake_connector.next_activity()
    assert reply.kind == "reply"
    assert reply.text == "echo: hello"
    assert reply.conversation_id == activity["conversation"]["id"]
    assert reply.reply_to_id == activity["id"]
    assert identity.authority.accepts(reply.authorization)
    assert fake_connector.rejected == []


async def test_the_bot_token_is_fetched_once_and_reused_across_turns(
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    identity: IdentityStandIns,
) -> None:
    bot = await serve_bot(echo_bot)
    requests_before = identity.authority.token_requests

    first_turns = await asyncio.gather(*(bot.post(teams.message(str(n))) for n in range(5)))
    assert [response.status for response in first_turns] == [200] * 5
    for text in ("six", "seven"):
        assert (await bot.post(teams.message(text))).status == 200

    replies = {(await fake_connector.next_message()).text for _ in range(7)}
    assert replies == {f"echo: {text}" for text in ("0", "1", "2", "3", "4", "six", "seven")}
    assert identity.authority.token_requests - requests_before == 1


async def test_turns_arriving_together_at_a_cold_start_fetch_the_signing_keys_once(
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    teams: TeamsActivities,
    identity: IdentityStandIns,
) -> None:
    bot = await serve_bot(echo_bot)
    metadata_before, keys_before = identity.openid.metadata_fetches, identity.openid.key_fetches

    turns = await asyncio.gather(*(bot.post(teams.message(str(n))) for n in range(20)))

    assert [response.status for response in turns] == [200] * 20
    assert identity.openid.metadata_fetches - metadata_before == 1
    assert identity.openid.key_fetches - keys_before == 1


async def test_turns_from_one_service_url_share_a_connector_client_and_others_get_their_own(
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
) -> None:
    bot = await serve_bot(echo_bot)
    other_connector = await FakeConnector().start()
    try:
        elsewhere = TeamsActivities(service_url=other_connector.url, bot_app_id=bot_settings.app_id)
        for activity in (teams.message("one"), teams.message("two"), elsewhere.message("three")):
            assert (await bot.post(activity)).status == 200

        assert {(await fake_connector.next_message()).text for _ in range(2)} == {
            "echo: one",
            "echo: two",
        }
        assert (await other_connector.next_message()).text == "echo: three"
    finally:
        await other_connector.close()
    first, second, third = echo_bot.connector_clients
    assert first is not None and first is second
    assert third is not None and third is not first


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"type": "message", "text": ', "application/json"),
        (b"hello bot", "text/plain"),
        (b"\xff\xfe not utf-8", "application/json"),
        (b'["type", "message"]', "application/json"),
        (b'{"text": "no type"}', "application/json"),
        (b'{"type": "message", "timestamp": "yesterday"}', "application/json"),
        (b'{"type": "message", "text": "no service url"}', "application/json"),
    ],
    ids=["truncated", "not-json", "not-utf8", "array", "no-type", "bad-field", "no-service-url"],
)
async def test_a_body_that_is_not_an_activity_gets_400(
    body: bytes,
    content_type: str,
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    token_minter: ChannelTokenMinter,
) -> None:
    bot = await serve_bot(echo_bot)

    response = await bot.post_raw(
        body, content_type=content_type, authorization=token_minter.authorization()
    )

    assert response.status == 400
    assert set(response.json()) == {"error"}
    assert echo_bot.turns == []


async def test_an_invoke_returning_a_dict_body_is_sent_back_as_is(
    serve_bot: ServeBot, echo_bot: RecordingEchoBot, teams: TeamsActivities
) -> None:
    bot = await serve_bot(echo_bot)

    response = await bot.post(teams.search("1111", dataset="free-numbers"))

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {
        "statusCode": 200,
        "type": SEARCH_RESPONSE_TYPE,
        "value": {"results": [{"title": "+44 20 7946 1111", "value": "1111"}]},
    }


class _HugeNumberBot(ActivityHandler):  # type: ignore[misc]
    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        return InvokeResponse(status=200, body={"value": 10**30})


async def test_an_invoke_body_with_an_integer_beyond_64_bits_is_sent_exactly(
    serve_bot: ServeBot, teams: TeamsActivities
) -> None:
    bot = await serve_bot(_HugeNumberBot())

    response = await bot.post(teams.search("1", dataset="free-numbers"))

    assert response.status == 200
    assert response.json() == {"value": 10**30}


async def test_an_adaptive_card_action_response_is_serialized_once(
    serve_bot: ServeBot, echo_bot: RecordingEchoBot, teams: TeamsActivities
) -> None:
    bot = await serve_bot(echo_bot)

    response = await bot.post(teams.card_action("user.create.submit", {"name": "Adele"}))

    assert response.status == 200, response.text
    assert response.json() == {
        "statusCode": 200,
        "type": "application/vnd.microsoft.card.adaptive",
        "value": done_card("user.create.submit"),
    }


async def test_an_unhandled_invoke_answers_501(
    serve_bot: ServeBot, echo_bot: RecordingEchoBot, teams: TeamsActivities
) -> None:
    bot = await serve_bot(echo_bot)
    activity = teams.base("invoke")
    activity["name"] = "composeExtension/query"

    response = await bot.post(activity)

    assert response.status == 501


async def test_without_an_app_id_the_bot_works_without_a_token_and_warns_at_startup(
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    open_bot_settings: BotSettings,
    fake_connector: FakeConnector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    bot = await serve_bot(echo_bot, settings=open_bot_settings)
    playground = TeamsActivities(service_url=fake_connector.url, bot_app_id="")

    response = await bot.post(playground.message("hi"), authorization=None)

    assert response.status == 200, response.text
    reply = await fake_connector.next_message()
    assert reply.text == "echo: hi"
    assert reply.authorization is None
    assert any(
        record.levelno == logging.WARNING and "UNAUTHENTICATED" in record.getMessage()
        for record in caplog.records
    )


async def test_healthz_answers_200(serve_bot: ServeBot, echo_bot: RecordingEchoBot) -> None:
    bot = await serve_bot(echo_bot)

    response = await bot.get("/healthz")

    assert response.status == 200
    assert response.json() == {"status": "ok"}


async def test_the_callers_request_id_comes_back_and_reaches_the_handler(
    serve_bot: ServeBot, echo_bot: RecordingEchoBot, teams: TeamsActivities
) -> None:
    bot = await serve_bot(echo_bot)

    response = await bot.post(teams.message("hi"), headers={"X-Request-Id": "teams-7f3a.01"})

    assert response.headers["X-Request-Id"] == "teams-7f3a.01"
    assert echo_bot.reference_ids == ["teams-7f3a.01"]
    assert echo_bot.request_ids == ["teams-7f3a.01"]


@pytest.mark.parametrize("sent", [None, "x" * 200, "id with spaces"])
async def test_a_missing_or_unsafe_request_id_is_replaced_by_a_fresh_one(
    sent: str | None, serve_bot: ServeBot, echo_bot: RecordingEchoBot, teams: TeamsActivities
) -> None:
    bot = await serve_bot(echo_bot)
    headers = {"X-Request-Id": sent} if sent is not None else {}

    first = await bot.post(teams.message("hi"), headers=headers)
    second = await bot.get("/healthz", headers=headers)

    assert first.headers["X-Request-Id"] != sent
    assert len(first.headers["X-Request-Id"]) == 12
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
    assert echo_bot.reference_ids == [first.headers["X-Request-Id"]]


async def test_a_failing_handler_gets_the_user_an_apology_with_a_reference_that_is_logged(
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    echo_bot.failure = RuntimeError(SECRET_DETAIL)
    bot = await serve_bot(echo_bot)

    response = await bot.post(teams.message("create user Adele"))

    assert response.status == 200
    reference = response.headers["X-Request-Id"]
    apology = await fake_connector.next_message()
    assert apology.text is not None
    assert "Sorry" in apology.text
    assert reference in apology.text
    assert SECRET_DETAIL not in apology.text
    assert "RuntimeError" not in apology.text
    logged = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert any(reference in record.getMessage() for record in logged)
    assert all(getattr(record, "request_id", None) == reference for record in logged)


async def test_a_failing_invoke_answers_a_card_error_with_the_reference(
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
) -> None:
    echo_bot.failure = RuntimeError(SECRET_DETAIL)
    bot = await serve_bot(echo_bot)

    response = await bot.post(teams.card_action("number.assign.submit", {"user": "adele"}))

    assert response.status == 200
    reference = response.headers["X-Request-Id"]
    body: dict[str, Any] = response.json()
    assert body["statusCode"] == 500
    assert body["type"] == "application/vnd.microsoft.error"
    assert reference in body["value"]["message"]
    assert SECRET_DETAIL not in response.text
    assert reference in ((await fake_connector.next_message()).text or "")


async def test_a_failing_type_ahead_search_answers_an_error_without_chat_messages(
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
) -> None:
    echo_bot.failure = RuntimeError(SECRET_DETAIL)
    bot = await serve_bot(echo_bot)

    response = await bot.post(teams.search("11", dataset="free-numbers"))

    assert response.status == 200
    assert response.json()["type"] == "application/vnd.microsoft.error"
    await fake_connector.assert_no_activity(within=0.1)


async def test_when_even_the_apology_cannot_be_sent_the_answer_is_500_with_the_reference(
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
) -> None:
    fake_connector.throttle(times=100, retry_after=0)
    bot = await serve_bot(echo_bot)

    response = await bot.post(teams.message("hello"))

    assert response.status == 500
    assert response.json() == {
        "error": "internal error",
        "reference": response.headers["X-Request-Id"],
    }
    assert fake_connector.throttled


@pytest.mark.parametrize(
    ("authenticated", "reuse_clients"),
    [(True, False), (True, True), (False, False)],
    ids=["app-id", "app-id-reusing-clients", "no-app-id"],
)
async def test_the_echo_baseline_answers_messages_and_card_actions(
    authenticated: bool,
    reuse_clients: bool,
    bot_settings: BotSettings,
    open_bot_settings: BotSettings,
    token_minter: ChannelTokenMinter,
    fake_connector: FakeConnector,
) -> None:
    settings = bot_settings if authenticated else open_bot_settings
    runner = await start_echo_bot(settings=settings, reuse_clients=reuse_clients)
    client = RunningBot(
        runner,
        aiohttp.ClientSession(),
        (lambda url: token_minter.authorization(service_url=url)) if authenticated else None,
    )
    activities = TeamsActivities(service_url=fake_connector.url, bot_app_id=settings.app_id)
    try:
        message = await client.post(activities.message("ping"))
        card = await client.post(activities.card_action("user.create.submit"))
    finally:
        await client.close()

    assert message.status == 201
    assert (await fake_connector.next_message()).text == "echo: ping"
    assert card.status == 200
    assert card.json()["value"]["body"][0]["text"] == "echo: user.create.submit"


async def test_proactive_messages_and_new_conversations_reach_the_connector_with_the_bot_token(
    serve_bot: ServeBot,
    echo_bot: RecordingEchoBot,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    identity: IdentityStandIns,
    bot_settings: BotSettings,
) -> None:
    fake_connector.require_authorization = identity.authority.accepts
    bot = await serve_bot(echo_bot)
    adapter = bot.app[BOT_ADAPTER_KEY]
    inbound = Activity().deserialize(teams.message("remember me"))
    reference = TurnContext.get_conversation_reference(inbound)
    proactive_references: list[str] = []

    async def notify(turn_context: TurnContext) -> None:
        proactive_references.append(reference_id(turn_context))
        await turn_context.send_activity("Your sync has finished.")

    await adapter.continue_conversation(reference, notify, bot_app_id=bot_settings.app_id)
    await adapter.create_conversation(
        bot_settings.app_id,
        notify,
        ConversationParameters(
            bot=reference.bot,
            members=[reference.user],
            tenant_id=teams.tenant_id,
            channel_data={"tenant": {"id": teams.tenant_id}},
        ),
        channel_id="msteams",
        service_url=fake_connector.url,
    )

    sent = await fake_connector.next_message()
    assert sent.conversation_id == reference.conversation.id
    assert sent.text == "Your sync has finished."
    created = await fake_connector.next_conversation()
    assert created.parameters["members"][0]["id"] == teams.user.teams_id
    in_new_conversation = await fake_connector.next_message()
    assert in_new_conversation.conversation_id == created.conversation_id
    assert fake_connector.rejected == []
    assert len(proactive_references) == 2
    assert len(set(proactive_references)) == 2
    assert echo_bot.turns == []
