"""`sendMail`: messages are kept for the admin pages instead of being delivered."""

from __future__ import annotations

import uuid
from typing import Any

from sandbox.graph.directory import tenant_of
from sandbox.graph.routing import GraphError, GraphRequest, GraphResponse, Router
from sandbox.models import Mail
from sandbox.state import SandboxState


def _addresses(message: dict[str, Any], field: str) -> list[str]:
    recipients = message.get(field) or []
    if not isinstance(recipients, list):
        raise GraphError(400, "ErrorInvalidRecipients", f"'{field}' must be a list.")
    addresses: list[str] = []
    for recipient in recipients:
        email = recipient.get("emailAddress") if isinstance(recipient, dict) else None
        address = email.get("address") if isinstance(email, dict) else None
        if not isinstance(address, str) or "@" not in address:
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                "At least one recipient isn't valid., A message can't be sent because it "
                "contains no recipients.",
            )
        addresses.append(address)
    return addresses


class MailApi:
    """Handler for `POST /users/{sender}/sendMail`."""

    def __init__(self, state: SandboxState) -> None:
        self._state = state

    def register(self, router: Router) -> None:
        """Add this API's routes."""
        router.add("POST", "/users/{user}/sendMail", self.send_mail)

    def send_mail(self, request: GraphRequest) -> GraphResponse:
        """Record the message and answer 202 Accepted."""
        payload = request.json_object()
        for name in payload:
            # The metadata spells the parameters Message and SaveToSentItems; case is ignored.
            if name.lower() not in ("message", "savetosentitems"):
                raise GraphError(
                    400,
                    "ErrorInvalidRequest",
                    f"The parameter '{name}' in the request payload is not a valid parameter "
                    "for the operation 'sendMail'.",
                )
        message = next((v for k, v in payload.items() if k.lower() == "message"), None)
        if not isinstance(message, dict):
            raise GraphError(400, "ErrorInvalidRequest", "The parameter 'message' is required.")
        to = _addresses(message, "toRecipients")
        cc = _addresses(message, "ccRecipients")
        if not to and not cc:
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                "At least one recipient isn't valid., A message can't be sent because it "
                "contains no recipients.",
            )
        body = message.get("body")
        if not isinstance(body, dict):
            body = {}
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            sender = tenant.find_user(request.params["user"])
            if sender is None:
                raise GraphError(
                    404,
                    "ErrorInvalidUser",
                    f"The requested user '{request.params['user']}' is invalid.",
                )
            self._state.record_mail(
                Mail(
                    id=str(uuid.uuid4()),
                    tenant_id=tenant.id,
                    sender=str(sender.props.get("mail") or sender.upn),
                    to=to,
                    cc=cc,
                    subject=str(message.get("subject") or ""),
                    body=str(body.get("content") or ""),
                    content_type=str(body.get("contentType") or "text"),
                )
            )
        return GraphResponse(202)
