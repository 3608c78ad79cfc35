"""The lock file `make` installs from covers pyproject.toml: every dependency, in a version its
specifier allows, with hashes. A dependency changed without `make lock` fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _locked() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for every pin of requirements.lock."""
    text = (ROOT / "requirements.lock").read_text()
    pins: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s\\;]+)", block)
        if match:
            pins[canonicalize_name(match[1])] = (match[2], block.count("--hash=sha256:"))
    return pins


def test_every_dependency_is_locked_in_a_version_its_specifier_allows() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = _locked()
    for line in wanted:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock: run `make lock`"
        version, hashes = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock has {requirement.name}=={version}, outside {requirement.specifier}"
            ": run `make lock`"
        )
        assert hashes >= 1, f"{requirement.name} is locked without a hash"


def test_every_pin_has_a_hash() -> None:
    assert all(hashes >= 1 for _, hashes in _locked().values())
