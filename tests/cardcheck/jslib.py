"""Card check through the official Adaptive Cards JavaScript library, run in plain Node."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.cardcheck.errors import CardCheckSetupError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LIBRARY_PATH = PROJECT_ROOT / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.js"
RUNNER_PATH = Path(__file__).with_name("validate_cards.js")
NODE_TIMEOUT_SECONDS = 120


def node_executable() -> str:
    """The `node` on PATH, or a setup error saying how to get one."""
    node = shutil.which("node")
    if node is None:
        raise CardCheckSetupError(
            "`node` is not on PATH: the Adaptive Cards library check needs it"
        )
    return node


def library_path() -> Path:
    """The UMD bundle of npm `adaptivecards`, or a setup error saying how to install it."""
    if not LIBRARY_PATH.is_file():
        raise CardCheckSetupError(
            f"{LIBRARY_PATH} is missing: run `npm install` (package.json pins adaptivecards)"
        )
    return LIBRARY_PATH


def js_library_events(cards: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Parse and validate every card in one Node process; one list of messages per card."""
    if not cards:
        return []
    completed = subprocess.run(
        [node_executable(), str(RUNNER_PATH), str(library_path())],
        input=json.dumps(list(cards)),
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
        check=False,
        cwd=PROJECT_ROOT,
    )
    if completed.returncode != 0:
        raise CardCheckSetupError(
            f"the Adaptive Cards library runner failed (exit {completed.returncode}):\n"
            f"{completed.stderr.strip()}"
        )
    results: list[list[str]] = json.loads(completed.stdout)
    if len(results) != len(cards):
        raise CardCheckSetupError(
            f"the runner answered for {len(results)} cards, {len(cards)} were sent"
        )
    return results
