"""Graph's front door: bearer tokens, injected faults, throttling, counters and JSON batching."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from sandbox.cloud import Sandbox
from sandbox.faults import Fault
from sandbox.graph.directory import DirectoryApi
from sandbox.graph.mail import MailApi
from sandbox.graph.permissions import allowed
from sandbox.graph.routing import (
    WRITE_METHODS,
    GraphError,
    GraphRequest,
    GraphResponse,
    Router,
)
from sandbox.graph.teams import TeamsApi
from sandbox.tokens import TokenClaims, TokenRejected

log = logging.getLogger(__name__)

VERSION_ROOT = "/v1.0"
JSON_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
MAX_BATCH_REQUESTS = 20
BATCH_ROUTE = "/$batch"
UNAUTHENTICATED_ROUTE = "(unauthenticated)"


def error_body(error: GraphError, request_id: str, client_request_id: str) -> dict[str, Any]:
    """Graph's OData error body, with the ids that let support find the request."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details:
        body["details"] = error.details
    body["innerError"] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": client_request_id,
    }
    return {"error": body}


class GraphService:
    """Authenticates, injects faults, throttles, counts and dispatches Graph requests."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.router = Router()
        DirectoryApi(sandbox.state, sandbox.config).register(self.router)
        TeamsApi(sandbox.state, sandbox.config).register(self.router)
        MailApi(sandbox.state).register(self.router)

    def routes(self) -> list[web.RouteDef]:
        """The aiohttp routes that carry every method under `/v1.0`."""
        return [web.route("*", VERSION_ROOT + "/{tail:.*}", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one HTTP request the way graph.microsoft.com would."""
        request_id = str(uuid.uuid4())
        client_request_id = request.headers.get("client-request-id") or request_id
        path = "/" + request.match_info["tail"]
        method = request.method.upper()
        try:
            claims = self._authenticate(request.headers.get("Authorization"))
        except GraphError as error:
            self.sandbox.stats.request(None, method, UNAUTHENTICATED_ROUTE)
            self.sandbox.stats.status(None, error.status)
            return self._error(error, request_id, client_request_id)
        tenant_id = claims.tenant_id

        fault = self.sandbox.faults.draw()
        if fault is not Fault.NONE:
            self.sandbox.stats.fault(tenant_id, fault.value)
        if fault is Fault.DROPPED:
            self.sandbox.stats.request(tenant_id, method, self._route_name(method, path))
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        if fault is Fault.SLOW:
            await asyncio.sleep(self.sandbox.faults.config.slow_seconds)
        if fault is Fault.UNAVAILABLE:
            self.sandbox.stats.request(tenant_id, method, self._route_name(method, path))
            self.sandbox.stats.status(tenant_id, 503)
            retry_after = str(self.sandbox.faults.config.retry_after_seconds)
            unavailable = GraphError(
                503,
                "ServiceNotAvailable",
                "The service is temporarily unavailable. Retry after the number of seconds in "
                "the Retry-After header.",
                headers={"Retry-After": retry_after},
            )
            return self._error(unavailable, request_id, client_request_id)

        try:
            body = await self._read_json(request)
        except GraphError as error:
            self.sandbox.stats.request(tenant_id, method, self._route_name(method, path))
            self.sandbox.stats.status(tenant_id, error.status)
            return self._error(error, request_id, client_request_id)
        graph_request = GraphRequest(
            method=method,
            path=path,
            query=dict(request.query),
            headers=request.headers,
            body=body,
            tenant_id=tenant_id,
            app_id=claims.app_id,
            base_url=f"{request.scheme}://{request.host}{VERSION_ROOT}",
            roles=claims.roles,
        )
        if path.rstrip("/").lower() == BATCH_ROUTE.lower():
            response = self._batch(graph_request, request_id, client_request_id)
        else:
            response = self.dispatch(graph_request, request_id, client_request_id)
        return self._to_http(response, request_id, client_request_id)

    def _authenticate(self, header: str | None) -> TokenClaims:
        if not header or not header.lower().startswith("bearer ") or not header[7:].strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            return self.sandbox.issuer.verify(header[7:].strip())
        except TokenRejected as rejected:
            raise GraphError(401, "InvalidAuthenticationToken", str(rejected)) from rejected

    @staticmethod
    async def _read_json(request: web.Request) -> Any:
        if not request.can_read_body:
            return None
        raw = await request.read()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise GraphError(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set "
                "and payload is of valid JSON format.",
            ) from exc

    def _route_name(self, method: str, path: str) -> str:
        if path.rstrip("/").lower() == BATCH_ROUTE.lower():
            return BATCH_ROUTE
        try:
            return self.router.resolve(method, path)[0].template
        except GraphError:
            return path

    def dispatch(
        self, request: GraphRequest, request_id: str, client_request_id: str
    ) -> GraphResponse:
        """Route, throttle and run one request (direct or from a batch) and count it."""
        stats = self.sandbox.stats
        try:
            route, params = self.router.resolve(request.method, request.path)
        except GraphError as error:
            stats.request(request.tenant_id, request.method, request.path)
            stats.status(request.tenant_id, error.status)
            return self._error_response(error, request_id, client_request_id)
        stats.request(request.tenant_id, request.method, route.template)
        if not allowed(route.method, route.template, request.roles):
            stats.status(request.tenant_id, 403)
            denied = GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
            return self._error_response(denied, request_id, client_request_id)
        if request.method in WRITE_METHODS:
            wait = self.sandbox.throttle.admit_write(request.tenant_id, request.app_id)
            if wait is not None:
                stats.throttled(request.tenant_id)
                stats.status(request.tenant_id, 429)
                throttled = GraphError(
                    429,
                    "TooManyRequests",
                    "Too many requests. Retry after the number of seconds in the Retry-After "
                    "header.",
                    headers={"Retry-After": str(wait)},
                )
                return self._error_response(throttled, request_id, client_request_id)
            stats.write_accepted(request.tenant_id)
        request.params = params
        try:
            response = route.handler(request)
        except GraphError as error:
            response = self._error_response(error, request_id, client_request_id)
        except Exception:
            log.exception("handler failed: %s %s", request.method, route.template)
            failure = GraphError(500, "InternalServerError", "An internal server error occurred.")
            response = self._error_response(failure, request_id, client_request_id)
        stats.status(request.tenant_id, response.status)
        return response

    @staticmethod
    def _error_response(
        error: GraphError, request_id: str, client_request_id: str
    ) -> GraphResponse:
        return GraphResponse(
            error.status, error_body(error, request_id, client_request_id), dict(error.headers)
        )

    def _error(self, error: GraphError, request_id: str, client_request_id: str) -> web.Response:
        return self._to_http(
            self._error_response(error, request_id, client_request_id),
            request_id,
            client_request_id,
        )

    @staticmethod
    def _to_http(response: GraphResponse, request_id: str, client_request_id: str) -> web.Response:
        headers = {
            "request-id": request_id,
            "client-request-id": client_request_id,
            **response.headers,
        }
        if response.body is None:
            return web.Response(status=response.status, headers=headers)
        headers["Content-Type"] = JSON_CONTENT_TYPE
        return web.Response(status=response.status, text=json.dumps(response.body), headers=headers)

    # JSON batching

    def _batch(
        self, request: GraphRequest, request_id: str, client_request_id: str
    ) -> GraphResponse:
        stats = self.sandbox.stats
        stats.request(request.tenant_id, request.method, BATCH_ROUTE)
        stats.batch(request.tenant_id)
        try:
            items = self._batch_items(request)
        except GraphError as error:
            stats.status(request.tenant_id, error.status)
            return self._error_response(error, request_id, client_request_id)
        statuses: dict[str, int] = {}
        responses = []
        throttled: GraphResponse | None = None
        for item in items:
            inner_id = str(item["id"])
            if throttled is not None:
                # Graph does not run the rest of a batch that holds a throttled request.
                inner = self._not_run(request, item)
            else:
                inner = self._run_inner(request, item, statuses)
                if inner.status == 429 and self.sandbox.config.batch_failed_dependency:
                    throttled = inner
            statuses[inner_id] = inner.status
            entry: dict[str, Any] = {
                "id": inner_id,
                "status": inner.status,
                "headers": inner.headers,
            }
            if inner.body is not None:
                entry["body"] = inner.body
            responses.append(entry)
        if throttled is not None:
            stats.status(request.tenant_id, 424)
            retry_after = throttled.headers.get("Retry-After", "1")
            return GraphResponse(424, {"responses": responses}, {"Retry-After": retry_after})
        stats.status(request.tenant_id, 200)
        return GraphResponse(200, {"responses": responses})

    def _not_run(self, outer: GraphRequest, item: dict[str, Any]) -> GraphResponse:
        request_id = str(uuid.uuid4())
        headers = item.get("headers") if isinstance(item.get("headers"), dict) else {}
        client_request_id = str((headers or {}).get("client-request-id") or request_id)
        failed = GraphError(
            424, "FailedDependency", "The request was not run: the batch was throttled."
        )
        response = self._error_response(failed, request_id, client_request_id)
        response.headers["Content-Type"] = "application/json"
        return response

    @staticmethod
    def _batch_items(request: GraphRequest) -> list[dict[str, Any]]:
        if request.method != "POST":
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed.")
        body = request.body
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            raise GraphError(400, "BadRequest", "Invalid batch payload format.")
        items: list[dict[str, Any]] = body["requests"]
        if not items:
            raise GraphError(400, "BadRequest", "Batch request must contain at least one request.")
        if len(items) > MAX_BATCH_REQUESTS:
            raise GraphError(
                400,
                "BadRequest",
                f"Number of requests in the batch exceeds the maximum of {MAX_BATCH_REQUESTS}.",
            )
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, dict) or item.get("id") in (None, ""):
                raise GraphError(400, "BadRequest", "Each request in a batch must have an id.")
            if str(item["id"]) in seen:
                raise GraphError(400, "BadRequest", "Request ids in a batch must be unique.")
            seen.add(str(item["id"]))
            if not isinstance(item.get("method"), str) or not isinstance(item.get("url"), str):
                raise GraphError(
                    400, "BadRequest", "Each request in a batch must have a method and a url."
                )
        return items

    def _run_inner(
        self, outer: GraphRequest, item: dict[str, Any], statuses: Mapping[str, int]
    ) -> GraphResponse:
        request_id = str(uuid.uuid4())
        raw_headers = item.get("headers") or {}
        headers: CIMultiDict[str] = CIMultiDict(
            {str(k): str(v) for k, v in raw_headers.items()}
            if isinstance(raw_headers, dict)
            else {}
        )
        client_request_id = headers.get("client-request-id") or request_id

        def fail(status: int, code: str, message: str) -> GraphResponse:
            response = self._error_response(
                GraphError(status, code, message), request_id, client_request_id
            )
            response.headers["Content-Type"] = "application/json"
            return response

        depends_on = item.get("dependsOn") or []
        for dependency in depends_on:
            if str(dependency) not in statuses:
                return fail(400, "BadRequest", f"Dependency '{dependency}' must come earlier.")
            if not 200 <= statuses[str(dependency)] < 300:
                return fail(424, "FailedDependency", "A request this one depends on failed.")
        url = URL(item["url"])
        if url.is_absolute():
            return fail(400, "BadRequest", "Batch request urls must be relative.")
        path = "/" + url.path.lstrip("/")
        if path.rstrip("/").lower() == BATCH_ROUTE.lower():
            return fail(400, "BadRequest", "A batch cannot contain another batch.")
        body = item.get("body")
        if body is not None and "Content-Type" not in headers:
            return fail(400, "BadRequest", "Content-Type header is required when body is present.")
        inner = GraphRequest(
            method=str(item["method"]).upper(),
            path=path,
            query=dict(url.query),
            headers=headers,
            body=body,
            tenant_id=outer.tenant_id,
            app_id=outer.app_id,
            base_url=outer.base_url,
            roles=outer.roles,
        )
        response = self.dispatch(inner, request_id, client_request_id)
        inner_headers = dict(response.headers)
        if response.body is not None:
            inner_headers.setdefault("Content-Type", "application/json")
        return GraphResponse(response.status, response.body, inner_headers)
