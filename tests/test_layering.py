"""The layers stay apart: the services never reach up to the bot or the cards, and a card is
built from values alone, without the database, the sync engine or an HTTP client loaded."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import cards

ROOT = Path(__file__).resolve().parent.parent

# What building a card must not load: the ORM, the engine, Graph's HTTP client, migrations.
HEAVY = ("sqlalchemy", "services.provisioning", "services.db", "aiohttp", "alembic")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_services_never_import_the_bot_or_the_cards() -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (ROOT / "services").rglob("*.py")
        for module in _imports(path)
        if module.split(".")[0] in ("bot", "cards")
    }
    assert not offenders


def test_cards_are_built_from_values_without_loading_the_engine() -> None:
    modules = [f"cards.{info.name}" for info in pkgutil.iter_modules(cards.__path__)]
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(loaded.stdout) == [], "a card module loads the engine or the ORM"
