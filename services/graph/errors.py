"""Graph failures as domain errors: Microsoft's own message and the request id support needs."""

from __future__ import annotations

from services.errors import DomainError

TRANSIENT_STATUSES = frozenset({0, 408, 429, 500, 502, 503, 504})


class GraphError(DomainError):
    """Microsoft Graph refused or failed a request.

    `message` is fit for an admin: what Microsoft said, and the request id to quote.
    `status` is 0 when no HTTP answer came back (connection lost, timeout).
    """

    def __init__(
        self,
        graph_message: str,
        *,
        status: int,
        code: str = "",
        request_id: str = "",
        client_request_id: str = "",
    ) -> None:
        reference = request_id or client_request_id
        text = graph_message.strip() or "Microsoft Graph did not say why."
        if reference:
            text = f"{text} (Microsoft Graph request id {reference})"
        super().__init__(text)
        self.graph_message = graph_message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.client_request_id = client_request_id

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (throttling, outages, lost connections)."""
        return self.status in TRANSIENT_STATUSES


class GraphNotFoundError(GraphError):
    """The user, number or operation asked for does not exist."""


class GraphUnavailableError(GraphError):
    """Graph kept failing or throttling until the retry budget ran out."""


class GraphAuthenticationError(GraphError):
    """Entra would not give Switchboard a token for the tenant (consent, secret, tenant id)."""


class GraphNotConfiguredError(GraphError):
    """No credentials are configured for the tenant."""
