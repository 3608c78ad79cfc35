"""Typed messages that are no command: say what was not understood, and what was meant."""

from __future__ import annotations

from bot.router import Router
from cards.actions import UnknownCommand
from cards.common import Card
from cards.home import not_understood_card
from services.views import EnterpriseView

router = Router()


@router.action(UnknownCommand)
async def unknown_command(data: UnknownCommand, enterprise: EnterpriseView) -> Card:
    """ "I didn't understand …" with the closest commands and the command list."""
    return not_understood_card(data.text, enterprise)
