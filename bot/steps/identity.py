"""Identity and role: the admin behind the activity (tenant + Entra object id), or nobody we
know; a stranger's turn goes on, to be answered with the card that says who to ask."""

from __future__ import annotations

from bot.steps import Next, TurnState, tenant_id


async def identify(turn: TurnState, next: Next) -> None:
    """Find the admin and their role; remember whether at least the tenant is known."""
    activity = turn.activity
    enterprises = turn.services.enterprises
    tenant = tenant_id(activity)
    person = (activity.from_property.aad_object_id if activity.from_property else None) or ""
    turn.admin = await enterprises.identify(tenant, person) if tenant else None
    turn.tenant_known = turn.admin is not None or (
        bool(tenant) and await enterprises.by_tenant(tenant) is not None
    )
    await next()
