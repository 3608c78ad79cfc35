"""Free extensions: which extensions of the enterprise's range nobody has yet."""

from __future__ import annotations

from bot.router import Router
from cards.actions import OpenExtensions
from cards.common import Card
from cards.extensions import free_extensions_card
from services.inventory import Inventory
from services.views import EnterpriseView

router = Router()


@router.action(OpenExtensions)
async def open_extensions(
    data: OpenExtensions, enterprise: EnterpriseView, inventory: Inventory
) -> Card:
    """The free extensions, as runs of consecutive ones."""
    ranges = await inventory.free_extensions(enterprise.id)
    return free_extensions_card(enterprise, ranges)
