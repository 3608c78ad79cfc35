"""The `/_sandbox/` admin API: seed, faults, throttle, counters, state, mail, reset.

It is not part of Graph and needs no token; it exists for tests and the demo.
"""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from sandbox.cloud import Sandbox
from sandbox.config import FaultConfig, ThrottleLimits
from sandbox.graph.shapes import number_json, sku_json, user_configuration_json, user_json
from sandbox.models import Tenant, graph_time

ADMIN_ROOT = "/_sandbox"


def tenant_snapshot(tenant: Tenant) -> dict[str, Any]:
    """Everything the sandbox knows about one tenant, for tests and the demo to read."""
    return {
        "id": tenant.id,
        "displayName": tenant.display_name,
        "domains": list(tenant.domains),
        "users": [
            {
                **user_json(
                    user,
                    [
                        "id",
                        "userPrincipalName",
                        "displayName",
                        "mail",
                        "accountEnabled",
                        "usageLocation",
                        "assignedLicenses",
                    ],
                ),
                "teams": user_configuration_json(tenant, user),
            }
            for user in tenant.users.values()
        ],
        "skus": [sku_json(tenant, sku) for sku in tenant.skus.values()],
        "numberAssignments": [number_json(record) for record in tenant.numbers.values()],
        "operations": [
            {
                "id": op.id,
                "kind": op.kind,
                "telephoneNumber": op.telephone_number,
                "assignmentTargetId": op.assignment_target_id,
                "status": op.status,
                "statusDetail": op.status_detail,
                "createdDateTime": graph_time(op.created),
            }
            for op in tenant.operations.values()
        ],
        "roleAssignments": [
            {"principalId": r.principal_id, "roleDefinitionId": r.role_definition_id}
            for r in tenant.role_assignments
        ],
    }


def _mail_page(mails: list[dict[str, Any]]) -> str:
    rows = []
    for mail in mails:
        body = mail["body"]
        if mail["contentType"].lower() == "html":
            shown = f'<iframe sandbox="" srcdoc="{html.escape(body, quote=True)}"></iframe>'
        else:
            shown = f"<pre>{html.escape(body)}</pre>"
        rows.append(
            "<article>"
            f"<h2>{html.escape(mail['subject']) or '(no subject)'}</h2>"
            f"<p class=meta>{html.escape(mail['sentDateTime'])} &middot; from "
            f"{html.escape(mail['sender'])} to {html.escape(', '.join(mail['to'] + mail['cc']))}"
            f"</p>{shown}</article>"
        )
    content = "\n".join(rows) or "<p>No mail has been sent yet.</p>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>Sandbox mailbox</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "article{border:1px solid #ccc;border-radius:6px;padding:0 1rem 1rem;margin:1rem 0}"
        ".meta{color:#555}iframe{width:100%;min-height:12rem;border:1px solid #eee}"
        "pre{white-space:pre-wrap}</style></head><body>"
        f"<h1>Sandbox mailbox ({len(mails)})</h1>{content}</body></html>"
    )


class AdminApi:
    """Handlers under `/_sandbox/`."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def routes(self) -> list[web.RouteDef]:
        """The aiohttp routes of the admin API."""
        return [
            web.get(f"{ADMIN_ROOT}/", self.index),
            web.post(f"{ADMIN_ROOT}/seed", self.seed),
            web.post(f"{ADMIN_ROOT}/tenants", self.seed_tenant),
            web.get(f"{ADMIN_ROOT}/state", self.state),
            web.get(f"{ADMIN_ROOT}/faults", self.get_faults),
            web.put(f"{ADMIN_ROOT}/faults", self.put_faults),
            web.get(f"{ADMIN_ROOT}/throttle", self.get_throttle),
            web.put(f"{ADMIN_ROOT}/throttle", self.put_throttle),
            web.get(f"{ADMIN_ROOT}/stats", self.stats),
            web.get(f"{ADMIN_ROOT}/mail", self.mail_page),
            web.get(f"{ADMIN_ROOT}/mail.json", self.mail_json),
            web.post(f"{ADMIN_ROOT}/reset", self.reset),
        ]

    async def index(self, request: web.Request) -> web.Response:
        """List the admin endpoints."""
        return web.json_response({"endpoints": sorted({r.path for r in self.routes()})})

    @staticmethod
    async def _json_object(request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError as exc:
            raise web.HTTPBadRequest(text="expected a JSON object") from exc
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="expected a JSON object")
        return data

    async def seed(self, request: web.Request) -> web.Response:
        """Load a seed document `{"tenants": [...]}`."""
        document = await self._json_object(request)
        try:
            self._sandbox.state.seed(document)
        except (KeyError, ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=f"invalid seed: {exc}") from exc
        return web.json_response(
            {"tenants": [t.id for t in self._sandbox.state.tenants()]}, status=201
        )

    async def seed_tenant(self, request: web.Request) -> web.Response:
        """Load one tenant entry (same shape as an element of a seed's `tenants`)."""
        entry = await self._json_object(request)
        try:
            self._sandbox.state.seed({"tenants": [entry]})
        except (KeyError, ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=f"invalid tenant: {exc}") from exc
        return web.json_response({"id": entry["id"]}, status=201)

    async def state(self, request: web.Request) -> web.Response:
        """Users, SKUs, numbers, operations and roles, of one tenant (`?tenant=`) or all."""
        wanted = request.query.get("tenant")
        state = self._sandbox.state
        with state.lock:
            tenants = [t for t in state.tenants() if wanted in (None, t.id)]
            document = {
                "tenants": [tenant_snapshot(t) for t in tenants],
                "mails": [m.to_json() for m in state.mails(wanted)],
            }
        return web.json_response(document)

    async def get_faults(self, request: web.Request) -> web.Response:
        """The fault settings in force."""
        return web.json_response(self._sandbox.faults.config.to_json())

    async def put_faults(self, request: web.Request) -> web.Response:
        """Change fault settings; absent keys keep their values."""
        data = await self._json_object(request)
        try:
            chosen = FaultConfig.from_json(data, self._sandbox.faults.config)
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        return web.json_response(self._sandbox.set_faults(chosen).to_json())

    async def get_throttle(self, request: web.Request) -> web.Response:
        """The throttle limits in force."""
        return web.json_response(self._sandbox.throttle.limits.to_json())

    async def put_throttle(self, request: web.Request) -> web.Response:
        """Change throttle limits; absent keys keep their values. Windows start afresh."""
        data = await self._json_object(request)
        try:
            chosen = ThrottleLimits.from_json(data, self._sandbox.throttle.limits)
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        return web.json_response(self._sandbox.set_throttle(chosen).to_json())

    async def stats(self, request: web.Request) -> web.Response:
        """Counters per tenant, or of one tenant with `?tenant=`."""
        return web.json_response(self._sandbox.stats.to_json(request.query.get("tenant")))

    async def mail_page(self, request: web.Request) -> web.Response:
        """Sent mail as a web page, newest first."""
        mails = [m.to_json() for m in self._sandbox.state.mails(request.query.get("tenant"))]
        return web.Response(text=_mail_page(mails), content_type="text/html")

    async def mail_json(self, request: web.Request) -> web.Response:
        """Sent mail as JSON, newest first."""
        mails = [m.to_json() for m in self._sandbox.state.mails(request.query.get("tenant"))]
        return web.json_response({"value": mails})

    async def reset(self, request: web.Request) -> web.Response:
        """Forget all state and counters."""
        self._sandbox.reset()
        return web.Response(status=204)
