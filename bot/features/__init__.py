"""Feature modules: each defines a `router` with the verbs of one task; all are included here."""

from __future__ import annotations

import importlib
import pkgutil

from bot.router import Router


def build_router() -> Router:
    """One router holding every feature module's routes."""
    root = Router()
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        feature = importlib.import_module(f"{__name__}.{module.name}")
        root.include(feature.router)
    return root
