"""The README's commands work in a clone made anywhere: make finds the shared kits (a real
Asterisk, Graph's metadata) beside the checkout, or beside the repository it was cloned from."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOW = "show-kits: ; @echo $(SWITCHBOARD_ASTERISK_KIT) $(GRAPH_METADATA_CSDL)"


def _kits_seen_from(checkout: Path) -> list[Path]:
    shown = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", SHOW, "show-kits"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    )
    return [Path(word) for word in shown.stdout.split()]


def test_a_clone_made_elsewhere_finds_the_kits_beside_its_origin(tmp_path: Path) -> None:
    clone = tmp_path / "elsewhere" / "switchboard"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    assert not (clone.parent / "shared").exists()
    kit, metadata = _kits_seen_from(clone)
    assert (kit / "build").is_file()
    assert metadata.is_file() and metadata.name == "v1.0-Prod.csdl"
    # The very kit this checkout uses (beside it, or beside its own origin).
    assert kit.resolve() == _kits_seen_from(ROOT)[0].resolve()
