"""A fake Bot Connector on loopback: records what the bot sends and answers like Teams.

The bot's replies go to ``{serviceUrl}/v3/conversations/...``; activities built by
``tests.support.activities`` point their ``serviceUrl`` here.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

ActivityKind = Literal["send", "reply", "update", "delete"]
ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


@dataclass(frozen=True)
class ConnectorActivity:
    """One activity the bot sent, replied, updated or deleted through the connector."""

    kind: ActivityKind
    conversation_id: str
    activity_id: str
    reply_to_id: str | None
    body: dict[str, Any]
    authorization: str | None

    @property
    def type(self) -> str | None:
        """The activity type (``message``, ``typing``...)."""
        return self.body.get("type")

    @property
    def text(self) -> str | None:
        """The message text, if any."""
        return self.body.get("text")

    @property
    def attachments(self) -> list[dict[str, Any]]:
        """The attachments, possibly empty."""
        return list(self.body.get("attachments") or [])

    @property
    def adaptive_cards(self) -> list[dict[str, Any]]:
        """The contents of the Adaptive Card attachments."""
        return [
            attachment.get("content") or {}
            for attachment in self.attachments
            if attachment.get("contentType") == ADAPTIVE_CARD_CONTENT_TYPE
        ]


@dataclass(frozen=True)
class CreatedConversation:
    """A conversation the bot created proactively (``POST /v3/conversations``)."""

    conversation_id: str
    activity_id: str | None
    parameters: dict[str, Any]
    authorization: str | None


@dataclass(frozen=True)
class Upload:
    """A file the bot PUT to an upload URL the fake Teams handed out (file consent)."""

    key: str
    body: bytes
    headers: dict[str, str]


@dataclass
class _Throttle:
    remaining: int
    status: int
    retry_after: float


@dataclass
class FakeConnector:
    """Records the bot's outbound calls; can throttle; lets tests await activities.

    Set ``require_authorization`` to a predicate over the ``Authorization`` header to
    answer 401 to requests it rejects (for example ``LocalTokenAuthority.accepts``).
    """

    require_authorization: Callable[[str | None], bool] | None = None
    host: str = "127.0.0.1"
    activities: list[ConnectorActivity] = field(default_factory=list)
    conversations: list[CreatedConversation] = field(default_factory=list)
    throttled: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    unhandled: list[str] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    _files: dict[str, tuple[bytes, int]] = field(default_factory=dict, repr=False)
    _pending: list[ConnectorActivity] = field(default_factory=list, repr=False)
    _pending_conversations: list[CreatedConversation] = field(default_factory=list, repr=False)
    _throttle: _Throttle | None = field(default=None, repr=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _changed: asyncio.Condition | None = field(default=None, repr=False)
    _runner: web.AppRunner | None = field(default=None, repr=False)
    _port: int = 0

    async def start(self) -> FakeConnector:
        """Start serving on a free loopback port."""
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/v3/conversations", self._create_conversation)
        conversation = "/v3/conversations/{conversation_id}/activities"
        app.router.add_post(conversation, self._send)
        app.router.add_post(conversation + "/{activity_id}", self._reply)
        app.router.add_put(conversation + "/{activity_id}", self._update)
        app.router.add_delete(conversation + "/{activity_id}", self._delete)
        # Where Teams keeps files: an attachment's download URL, and a consent's upload URL.
        app.router.add_get("/_files/{key}", self._download)
        app.router.add_put("/_uploads/{key}", self._upload)
        app.router.add_route("*", "/{tail:.*}", self._unhandled)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """The service URL to put in activities (with a trailing slash, like Teams)."""
        return f"http://{self.host}:{self._port}/"

    @property
    def origin(self) -> str:
        """Where the fake Teams serves files: ``http://host:port``."""
        return f"http://{self.host}:{self._port}"

    def serve_file(self, data: bytes, *, status: int = 200) -> str:
        """A download URL answering ``data`` (with ``status``), like an attachment's."""
        key = uuid.uuid4().hex
        self._files[key] = (data, status)
        return f"{self.origin}/_files/{key}"

    def upload_url(self) -> tuple[str, str]:
        """A fresh upload URL (and its key), like a file consent's ``uploadInfo.uploadUrl``."""
        key = uuid.uuid4().hex
        return f"{self.origin}/_uploads/{key}", key

    def uploaded(self, key: str) -> Upload:
        """What the bot uploaded to the URL with this key."""
        found = [upload for upload in self.uploads if upload.key == key]
        assert found, f"nothing was uploaded to {key}; uploads so far: {self.uploads}"
        return found[-1]

    def throttle(self, times: int, *, retry_after: float = 1, status: int = 429) -> None:
        """Answer the next ``times`` outbound calls with ``status`` and ``Retry-After``."""
        self._throttle = _Throttle(times, status, retry_after)

    async def next_activity(
        self,
        timeout: float = 5.0,
        *,
        where: Callable[[ConnectorActivity], bool] | None = None,
    ) -> ConnectorActivity:
        """Return the oldest activity not yet taken (matching ``where``), waiting if needed.

        Raises AssertionError when none arrives within ``timeout`` seconds.
        """
        changed = self._condition()

        def first_match() -> int | None:
            for index, activity in enumerate(self._pending):
                if where is None or where(activity):
                    return index
            return None

        async with changed:
            try:
                await asyncio.wait_for(changed.wait_for(lambda: first_match() is not None), timeout)
            except TimeoutError:
                seen = [(a.kind, a.type, a.text) for a in self.activities]
                raise AssertionError(
                    f"no activity reached the fake connector within {timeout}s; all so far: {seen}"
                ) from None
            index = first_match()
            assert index is not None
            return self._pending.pop(index)

    async def next_message(self, timeout: float = 5.0) -> ConnectorActivity:
        """Return the next ``message`` activity (skipping typing indicators and the like)."""
        return await self.next_activity(timeout, where=lambda a: a.type == "message")

    async def next_conversation(self, timeout: float = 5.0) -> CreatedConversation:
        """Return the oldest proactively created conversation not yet taken."""
        changed = self._condition()
        async with changed:
            try:
                await asyncio.wait_for(
                    changed.wait_for(lambda: bool(self._pending_conversations)), timeout
                )
            except TimeoutError:
                raise AssertionError(f"the bot created no conversation within {timeout}s") from None
            return self._pending_conversations.pop(0)

    async def assert_no_activity(self, within: float = 0.3) -> None:
        """Fail if any activity not yet taken arrives within ``within`` seconds."""
        await asyncio.sleep(within)
        assert not self._pending, f"unexpected activities: {[a.body for a in self._pending]}"

    # HTTP handlers ----------------------------------------------------------------

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            raise RuntimeError("FakeConnector.start() was not awaited")
        return self._changed

    def _refusal(self, request: web.Request) -> web.Response | None:
        authorization = request.headers.get("Authorization")
        if self.require_authorization is not None and not self.require_authorization(authorization):
            self.rejected.append(f"{request.method} {request.path}")
            return _connector_error(401, "Unauthorized", "Authorization has been denied")
        throttle = self._throttle
        if throttle is not None and throttle.remaining > 0:
            throttle.remaining -= 1
            self.throttled.append(f"{request.method} {request.path}")
            response = _connector_error(throttle.status, "TooManyRequests", "Throttled")
            response.headers["Retry-After"] = _seconds(throttle.retry_after)
            return response
        return None

    async def _record(self, request: web.Request, kind: ActivityKind) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body: dict[str, Any] = {} if kind == "delete" else await request.json()
        existing_id = request.match_info.get("activity_id")
        activity_id = (
            existing_id
            if kind in ("update", "delete") and existing_id
            else f"activity-{next(self._ids)}"
        )
        recorded = ConnectorActivity(
            kind=kind,
            conversation_id=request.match_info["conversation_id"],
            activity_id=activity_id,
            reply_to_id=existing_id if kind == "reply" else None,
            body=body,
            authorization=request.headers.get("Authorization"),
        )
        changed = self._condition()
        async with changed:
            self.activities.append(recorded)
            self._pending.append(recorded)
            changed.notify_all()
        return web.json_response({"id": activity_id})

    async def _send(self, request: web.Request) -> web.Response:
        return await self._record(request, "send")

    async def _reply(self, request: web.Request) -> web.Response:
        return await self._record(request, "reply")

    async def _update(self, request: web.Request) -> web.Response:
        return await self._record(request, "update")

    async def _delete(self, request: web.Request) -> web.Response:
        return await self._record(request, "delete")

    async def _create_conversation(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        parameters = await request.json()
        number = next(self._ids)
        conversation_id = f"a:proactive-{number}"
        activity_id = f"activity-{number}" if parameters.get("activity") else None
        created = CreatedConversation(
            conversation_id, activity_id, parameters, request.headers.get("Authorization")
        )
        changed = self._condition()
        async with changed:
            self.conversations.append(created)
            self._pending_conversations.append(created)
            changed.notify_all()
        return web.json_response(
            {"id": conversation_id, "activityId": activity_id, "serviceUrl": self.url}, status=201
        )

    async def _download(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        self.downloads.append(key)
        if key not in self._files:
            return web.Response(status=404)
        data, status = self._files[key]
        return web.Response(body=data, status=status, content_type="text/csv")

    async def _upload(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name: value for name, value in request.headers.items()}
        self.uploads.append(Upload(request.match_info["key"], body, headers))
        return web.json_response({"id": request.match_info["key"]}, status=201)

    async def _unhandled(self, request: web.Request) -> web.Response:
        self.unhandled.append(f"{request.method} {request.path}")
        return _connector_error(404, "NotFound", f"The fake connector has no {request.path}")


def _connector_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
