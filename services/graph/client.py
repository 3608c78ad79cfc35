"""The Graph client: one aiohttp session for every tenant, and a paced client per tenant.

Every request carries a fresh `client-request-id`, which is logged with Graph's own
`request-id`. Throttling (429) and outages (503, 504) are retried after the `Retry-After`
Graph gives; other transient failures take the common backoff (`services.retry`); the total time and
the number of attempts per request are bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from services.config import GraphSettings
from services.graph.auth import TokenProvider
from services.graph.batching import Batcher
from services.graph.errors import GraphError, GraphNotFoundError, GraphUnavailableError
from services.graph.pacing import WritePacer
from services.graph.shared_pacing import SharedWriteBudget
from services.graph.wire import GraphAnswer, GraphCall, TransportError
from services.retry import backoff_seconds

logger = logging.getLogger(__name__)

# 424: a request of a batch Graph did not run because the batch held throttled requests.
RETRYABLE_STATUSES = frozenset({0, 408, 424, 429, 500, 502, 503, 504})
# Statuses for which Graph's Retry-After is the wait to honour.
RETRY_AFTER_STATUSES = frozenset({424, 429, 503, 504})
# Answers that tell us Graph did not count the write: its place in the budget is free again.
_NOT_COUNTED = frozenset({424, 429})
BATCH_PATH = "/$batch"


class GraphService:
    """Microsoft Graph for every enterprise's tenant: tokens, HTTP, pacing, batching."""

    def __init__(
        self,
        settings: GraphSettings,
        *,
        tokens: TokenProvider | None = None,
        ssl_context: ssl.SSLContext | None = None,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
    ) -> None:
        self.settings = settings
        self.tokens = tokens or TokenProvider(settings)
        self._ssl_context = ssl_context
        # Observers of every request on the wire (the contract tests record them).
        self._trace_configs = list(trace_configs)
        self._session: aiohttp.ClientSession | None = None
        self._tenants: dict[str, TenantGraph] = {}
        # The write budget every worker process shares (PostgreSQL), if one is in use.
        self.shared_budget: SharedWriteBudget | None = None

    def use_shared_budget(self, budget: SharedWriteBudget | None) -> None:
        """Pace writes on a schedule shared with every other worker, on top of our own."""
        self.shared_budget = budget

    @property
    def enabled(self) -> bool:
        """Whether credentials are configured, so Graph can be reached at all."""
        return self.settings.enabled

    def session(self) -> aiohttp.ClientSession:
        """The shared HTTP session, opened on first use in the running event loop."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=100, ssl=self._ssl_context or True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout_seconds),
                trace_configs=self._trace_configs or None,
            )
        return self._session

    def tenant(self, tenant_id: str) -> TenantGraph:
        """The client for one tenant (its own write budget and batches)."""
        key = tenant_id.lower()
        client = self._tenants.get(key)
        if client is None:
            client = self._tenants[key] = TenantGraph(self, key)
        return client

    async def close(self) -> None:
        """Stop every batcher and close the HTTP session."""
        for client in self._tenants.values():
            await client.close()
        self._tenants.clear()
        if self.shared_budget is not None:
            await self.shared_budget.close()
            self.shared_budget = None
        if self._session is not None:
            await self._session.close()
            self._session = None


class TenantGraph:
    """Graph as seen from one tenant: paced writes, batched requests, bounded retries."""

    def __init__(self, service: GraphService, tenant_id: str) -> None:
        self.service = service
        self.tenant_id = tenant_id
        settings = service.settings
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.pacer = WritePacer(settings.write_limit, settings.write_window_seconds)
        # Graph's write budget is per app and tenant: the shared schedule's key.
        client_id = (settings.credential_for(tenant_id) or ("", ""))[0]
        self.budget_key = f"{client_id}|{tenant_id}"
        self._shared_failed = False
        self._batcher = (
            Batcher(
                self._send_batch,
                max_size=settings.batch_size,
                linger=settings.batch_linger_seconds,
            )
            if settings.batch_size > 1
            else None
        )
        self.requests_sent = 0
        self.retries = 0
        # The tenant's policy ids by (type, name), as getPolicyId answered them.
        self.policy_ids: dict[tuple[str, str], str] = {}

    async def close(self) -> None:
        """Stop the batcher."""
        if self._batcher is not None:
            await self._batcher.close()

    # --- public calls ------------------------------------------------------------------

    async def send(self, method: str, path: str, body: Any = None) -> GraphAnswer:
        """Send one request, retrying what may succeed later; return the final answer.

        Raises GraphUnavailableError when throttling or failures outlast the retry budget;
        any other answer, success or refusal, is returned for the caller to judge.
        """
        call = GraphCall(method.upper(), path, body)
        started = time.monotonic()
        attempt = 0
        token_refreshed = False
        while True:
            attempt += 1
            answer = await self._attempt(call)
            if answer.status == 401 and not token_refreshed:
                # An expired or revoked token: fetch a new one, once.
                self.service.tokens.invalidate(self.tenant_id)
                token_refreshed = True
                continue
            if answer.status not in RETRYABLE_STATUSES:
                return dataclasses.replace(answer, client_request_id=call.client_request_id)
            delay = self._delay(answer, attempt)
            elapsed = time.monotonic() - started
            if attempt >= self.settings.max_attempts or (
                elapsed + delay > self.settings.max_retry_seconds
            ):
                logger.warning(
                    "Graph %s %s gave up after %d attempts: %s (client-request-id %s)",
                    call.method,
                    _loggable(call.path),
                    attempt,
                    answer.status or "no answer",
                    call.client_request_id,
                )
                raise GraphUnavailableError(
                    answer.error_message
                    or "Microsoft Graph is busy or unreachable; the sync will try again later.",
                    status=answer.status,
                    code=answer.error_code,
                    request_id=answer.request_id,
                    client_request_id=call.client_request_id,
                )
            self.retries += 1
            logger.info(
                "Graph %s %s answered %s; retry %d in %.2fs (client-request-id %s)",
                call.method,
                _loggable(call.path),
                answer.status or "nothing",
                attempt,
                delay,
                call.client_request_id,
            )
            await asyncio.sleep(delay)

    async def call(self, method: str, path: str, body: Any = None) -> GraphAnswer:
        """Send one request and return its successful answer, or raise the GraphError."""
        answer = await self.send(method, path, body)
        if answer.status >= 400:
            raise to_error(answer)
        return answer

    async def get(self, path: str) -> dict[str, Any] | None:
        """GET a resource's JSON, or None when Graph says it does not exist."""
        answer = await self.send("GET", path)
        if answer.status == 404:
            return None
        if answer.status >= 400:
            raise to_error(answer)
        return answer.body if isinstance(answer.body, dict) else {}

    async def items(self, path: str) -> AsyncIterator[dict[str, Any]]:
        """Every item of a collection, following `@odata.nextLink` page after page."""
        next_path: str | None = path
        while next_path:
            page = (await self.call("GET", next_path)).body
            if not isinstance(page, dict):
                return
            for item in page.get("value") or []:
                if isinstance(item, dict):
                    yield item
            link = page.get("@odata.nextLink")
            next_path = self.relative(link) if isinstance(link, str) else None

    # --- one attempt -------------------------------------------------------------------

    async def _attempt(self, call: GraphCall) -> GraphAnswer:
        if not call.is_write:
            return await self._deliver(call)
        await self.pacer.acquire()
        try:
            await self._shared("acquire")
            answer = await self._deliver(call)
        except BaseException:
            self.pacer.release()
            raise
        if answer.status in _NOT_COUNTED:
            self.pacer.release()
            self.pacer.pause(answer.retry_after or 1.0)
            await self._shared("pause", answer.retry_after or 1.0)
        else:
            # Answered, or lost on the way (it may have counted): it occupies the window.
            self.pacer.settle()
        return answer

    async def _shared(self, action: str, seconds: float = 0.0) -> None:
        """Use the shared schedule; if the database cannot be reached, pace locally only."""
        budget = self.service.shared_budget
        if budget is None:
            return
        try:
            if action == "acquire":
                await budget.acquire(self.budget_key)
            else:
                await budget.pause(self.budget_key, seconds)
            self._shared_failed = False
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not self._shared_failed:
                logger.warning(
                    "The shared Graph write schedule is out of reach (%s); pacing this "
                    "worker on its own",
                    type(error).__name__,
                )
            self._shared_failed = True

    async def _deliver(self, call: GraphCall) -> GraphAnswer:
        """One try over the wire; a lost connection comes back as status 0."""
        try:
            if self._batcher is not None and call.path != BATCH_PATH:
                return await self._batcher.submit(call)
            return await self._send_direct(call)
        except TransportError as error:
            return GraphAnswer(0, {}, {"error": {"code": "network", "message": str(error)}})

    def _delay(self, answer: GraphAnswer, attempt: int) -> float:
        retry_after = answer.retry_after
        if answer.status in RETRY_AFTER_STATUSES and retry_after is not None:
            return retry_after
        return backoff_seconds(
            attempt,
            base=self.settings.backoff_base_seconds,
            cap=self.settings.backoff_max_seconds,
        )

    async def _send_direct(self, call: GraphCall) -> GraphAnswer:
        token = await self.service.tokens.token(self.tenant_id)
        headers = {
            "Authorization": f"Bearer {token}",
            "client-request-id": call.client_request_id,
            "Accept": "application/json",
        }
        data: bytes | None = None
        if call.body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(call.body).encode()
        started = time.monotonic()
        self.requests_sent += 1
        try:
            async with self.service.session().request(
                call.method, self.base_url + call.path, data=data, headers=headers
            ) as response:
                raw = await response.read()
                answer = GraphAnswer(
                    response.status,
                    {key.lower(): value for key, value in response.headers.items()},
                    _json_or_none(raw),
                )
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.info(
                "Graph %s %s: no answer (%s) (client-request-id %s)",
                call.method,
                _loggable(call.path),
                type(error).__name__,
                call.client_request_id,
            )
            raise TransportError(type(error).__name__) from error
        logger.debug(
            "Graph %s %s -> %s in %.0f ms (client-request-id %s, request-id %s)",
            call.method,
            _loggable(call.path),
            answer.status,
            (time.monotonic() - started) * 1000,
            call.client_request_id,
            answer.request_id,
        )
        return answer

    async def _send_batch(self, calls: list[GraphCall]) -> list[GraphAnswer]:
        requests_ = []
        for index, call in enumerate(calls, start=1):
            entry: dict[str, Any] = {
                "id": str(index),
                "method": call.method,
                "url": call.path,
                "headers": {"client-request-id": call.client_request_id},
            }
            if call.body is not None:
                entry["body"] = call.body
                entry["headers"]["Content-Type"] = "application/json"
            requests_.append(entry)
        envelope = await self._send_direct(GraphCall("POST", BATCH_PATH, {"requests": requests_}))
        responses = envelope.body.get("responses") if isinstance(envelope.body, dict) else None
        if envelope.status not in (200, 424) or not isinstance(responses, list):
            # The whole batch failed (outage, throttling, bad token): each request learns it.
            return [envelope for _ in calls]
        # A 424 envelope still answers each request: the throttled ones 429, the ones Graph
        # did not run 424; both are retried alone, the others are final.
        by_id = {str(r.get("id")): r for r in responses if isinstance(r, dict)}
        answers = []
        for index, call in enumerate(calls, start=1):
            inner = by_id.get(str(index))
            if inner is None:
                missing = {"error": {"code": "missing", "message": "no answer in the batch"}}
                answers.append(GraphAnswer(424 if envelope.status == 424 else 0, {}, missing))
                continue
            headers = inner.get("headers") if isinstance(inner.get("headers"), dict) else {}
            answer = GraphAnswer(
                int(inner.get("status", 0)),
                {str(k).lower(): str(v) for k, v in (headers or {}).items()},
                inner.get("body"),
            )
            logger.debug(
                "Graph %s %s -> %s in batch (client-request-id %s, request-id %s)",
                call.method,
                _loggable(call.path),
                answer.status,
                call.client_request_id,
                answer.request_id or envelope.request_id,
            )
            answers.append(answer)
        return answers

    def relative(self, link: str) -> str:
        """A path under the version root for an absolute Graph URL (next links, Locations)."""
        return link[len(self.base_url) :] if link.startswith(self.base_url) else link


def to_error(answer: GraphAnswer) -> GraphError:
    """The domain error for a refused request, carrying Graph's message and request id."""
    kind = GraphNotFoundError if answer.status == 404 else GraphError
    return kind(
        answer.error_message or f"Microsoft Graph answered {answer.status}.",
        status=answer.status,
        code=answer.error_code,
        request_id=answer.request_id,
        client_request_id=answer.client_request_id,
    )


def _json_or_none(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _loggable(path: str) -> str:
    """The path without its query (filters may hold addresses; they add nothing to a log)."""
    return path.split("?", 1)[0]
