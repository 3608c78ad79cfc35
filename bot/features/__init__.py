"""Feature modules: each defines a `router` with the verbs of one task; all are included here,
by name, in the order they are listed."""

from __future__ import annotations

from bot.features import (
    bulk,
    callerid,
    commands,
    directory,
    extensions,
    numbers,
    offboarding,
    sync,
    telephony,
    unlicensed,
    users,
)
from bot.router import Router

FEATURES = (
    users,
    numbers,
    extensions,
    callerid,
    directory,
    unlicensed,
    sync,
    telephony,
    offboarding,
    bulk,
    commands,
)


def build_router() -> Router:
    """One router holding every feature module's routes."""
    root = Router()
    for feature in FEATURES:
        root.include(feature.router)
    return root
