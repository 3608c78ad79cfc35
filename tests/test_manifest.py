"""The Teams app package: built from the template, checked against Microsoft's own schema."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator
from PIL import Image
from referencing import Registry

from manifest import icons
from manifest.build import (
    ConfigError,
    InvalidPackageError,
    ManifestSettings,
    build_package,
    load_template,
    render_manifest,
    validate_manifest,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = REPO_ROOT / "node_modules/@microsoft/app-manifest/build/json-schemas/teams"
BOT_ID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
TEAMS_APP_ID = "6f1c2a9e-8d4b-4c3a-9e7f-0a1b2c3d4e5f"
COMMANDS = [
    "help",
    "create user",
    "find user",
    "directory",
    "free numbers",
    "caller id",
    "unlicensed users",
    "sync",
    "sync status",
    "export",
    "import",
]
# Absent from the environment of the package-building subprocesses below.
APP_ENV_VARS = ("MICROSOFT_APP_ID", "MicrosoftAppId", "TEAMS_APP_ID", "TEAMS_MANIFEST_SCHEMA")


def schema_path(version: str) -> Path:
    path = SCHEMAS / f"v{version}" / "MicrosoftTeams.schema.json"
    assert path.is_file(), f"{path} is missing: run `npm install` (the tests need the schema)"
    return path


def settings(**overrides: Any) -> ManifestSettings:
    values: dict[str, Any] = {
        "bot_app_id": BOT_ID,
        "teams_app_id": TEAMS_APP_ID,
        "version": "1.4.2",
        "valid_domains": ("switchboard.example.com", "*.pbx.example.net"),
        "website_url": "https://switchboard.example.org",
        "privacy_url": "https://switchboard.example.org/privacy",
        "terms_url": "https://switchboard.example.org/terms",
    }
    values.update(overrides)
    return ManifestSettings(**values)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package") / "appPackage.zip"
    return build_package(settings(), out)


@pytest.fixture(scope="module")
def unpacked(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(package) as archive:
        archive.extractall(target)
    return target


@pytest.fixture(scope="module")
def manifest(unpacked: Path) -> dict[str, Any]:
    raw = (unpacked / "manifest.json").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf"), "Teams rejects a manifest with a BOM"
    data: dict[str, Any] = json.loads(raw)
    return data


def test_template_is_on_the_newest_schema_that_ships() -> None:
    shipped = [
        tuple(int(part) for part in path.parent.name[1:].split("."))
        for path in SCHEMAS.glob("v1.*/MicrosoftTeams.schema.json")
    ]
    assert shipped, f"no Teams manifest schemas under {SCHEMAS}: run `npm install`"
    newest = ".".join(str(part) for part in max(shipped))
    template = load_template()
    assert template["manifestVersion"] == newest
    assert template["$schema"] == (
        f"https://developer.microsoft.com/en-us/json-schemas/teams/v{newest}/"
        "MicrosoftTeams.schema.json"
    )


def test_package_holds_the_manifest_and_both_icons_at_its_root(package: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        assert archive.testzip() is None


def test_manifest_is_valid_against_the_official_schema(manifest: dict[str, Any]) -> None:
    schema = json.loads(schema_path(manifest["manifestVersion"]).read_text(encoding="utf-8"))

    def refuse(uri: str) -> Any:
        raise AssertionError(f"the schema tried to fetch {uri}")

    validator = Draft4Validator(schema, registry=Registry(retrieve=refuse))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(manifest)]
    assert errors == []
    # Draft-04 has no `const`; the schema pins the version with it, so check it by hand.
    assert schema["properties"]["manifestVersion"]["const"] == manifest["manifestVersion"]
    assert validate_manifest(manifest) == []


def test_manifest_passes_the_validator_microsoft_uses(unpacked: Path) -> None:
    # @microsoft/app-manifest validates draft-04 schemas with ajv-draft-04 + ajv-formats.
    node = shutil.which("node")
    assert node, "node is needed to run Microsoft's manifest validator"
    manifest_path = unpacked / "manifest.json"
    version = json.loads(manifest_path.read_text(encoding="utf-8"))["manifestVersion"]
    script = """
        const Ajv = require("ajv-draft-04");
        const addFormats = require("ajv-formats");
        const fs = require("fs");
        const read = (p) => JSON.parse(fs.readFileSync(p, "utf8"));
        const ajv = new Ajv({ allErrors: true, strictTypes: false });
        addFormats(ajv, ["uri", "email", "regex"]);
        const validate = ajv.compile(read(process.argv[2]));
        const ok = validate(read(process.argv[1]));
        console.log(JSON.stringify(ok ? [] : validate.errors));
    """
    result = subprocess.run(
        [node, "-e", script, str(manifest_path), str(schema_path(version))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_manifest_carries_the_ids_and_settings(manifest: dict[str, Any]) -> None:
    assert manifest["id"] == TEAMS_APP_ID
    assert manifest["version"] == "1.4.2"
    assert manifest["validDomains"] == ["switchboard.example.com", "*.pbx.example.net"]
    assert manifest["developer"]["websiteUrl"] == "https://switchboard.example.org"
    assert manifest["developer"]["privacyUrl"] == "https://switchboard.example.org/privacy"
    assert manifest["developer"]["termsOfUseUrl"] == "https://switchboard.example.org/terms"
    assert manifest["name"]["short"] == "Switchboard"
    assert manifest["accentColor"] == icons.ACCENT_COLOR
    assert "${{" not in json.dumps(manifest)


def test_bot_works_in_personal_chat_and_teams_with_the_same_commands(
    manifest: dict[str, Any],
) -> None:
    [bot] = manifest["bots"]
    assert bot["botId"] == BOT_ID
    assert sorted(bot["scopes"]) == ["personal", "team"]
    assert bot["supportsFiles"] is True  # a CSV of numbers can be dropped into personal chat
    assert bot["isNotificationOnly"] is False
    by_scope = {
        scope: [command["title"] for command in command_list["commands"]]
        for command_list in bot["commandLists"]
        for scope in command_list["scopes"]
    }
    assert by_scope == {"personal": COMMANDS, "team": COMMANDS}
    for command_list in bot["commandLists"]:
        for command in command_list["commands"]:
            # The limits of older manifest versions, which Teams clients still display by.
            assert len(command["title"]) <= 32
            assert 0 < len(command["description"]) <= 128


def test_color_icon_is_192_pixels_and_opaque(unpacked: Path) -> None:
    with Image.open(unpacked / "color.png") as image:
        assert image.format == "PNG"
        assert image.size == (192, 192)
        alpha = image.convert("RGBA").getchannel("A")
    assert alpha.getextrema() == (255, 255)


def test_outline_icon_is_32_pixels_of_white_on_transparent(unpacked: Path) -> None:
    with Image.open(unpacked / "outline.png") as image:
        assert image.format == "PNG"
        assert image.size == (32, 32)
        assert image.mode == "RGBA"
        pixels = list(image.get_flattened_data())
    alphas = [pixel[3] for pixel in pixels]
    assert 0 in alphas, "the background must be transparent"
    assert sum(alpha == 255 for alpha in alphas) >= 32, "the mark must be visible"
    not_white = [p for p in pixels if p[3] and p[:3] != (255, 255, 255)]
    assert not_white == []


def test_committed_icons_are_what_the_icon_script_draws() -> None:
    for name, render in (
        ("color.png", icons.render_color_icon),
        ("outline.png", icons.render_outline_icon),
    ):
        with Image.open(icons.MANIFEST_DIR / name) as committed:
            stale = committed.tobytes() != render().tobytes()
        assert not stale, f"{name} is stale: run python -m manifest.icons"


def test_building_twice_gives_the_same_bytes(package: Path, tmp_path: Path) -> None:
    again = build_package(settings(), tmp_path / "again.zip")
    assert again.read_bytes() == package.read_bytes()


def test_a_bad_bot_id_is_reported_by_validate_manifest() -> None:
    problems = validate_manifest(render_manifest(settings(bot_app_id="not-a-guid")))
    assert any(problem.startswith("bots[0].botId:") for problem in problems), problems


def test_a_manifest_on_the_wrong_version_is_reported() -> None:
    manifest = render_manifest(settings())
    problems = validate_manifest(manifest, schema_path=schema_path(manifest["manifestVersion"]))
    assert problems == []
    manifest["manifestVersion"] = "1.29"
    problems = validate_manifest(manifest, schema_path=schema_path("1.30"))
    assert any(problem.startswith("manifestVersion:") for problem in problems), problems
    assert any(problem.startswith("$schema:") for problem in problems), problems


def test_rules_the_schema_cannot_express_are_reported() -> None:
    manifest = render_manifest(settings())
    bot = manifest["bots"][0]
    bot["scopes"] = ["personal"]  # the team command list is now orphaned
    bot["commandLists"][0]["commands"].append({"title": "help", "description": "again"})
    problems = validate_manifest(manifest)
    assert "bots[0].commandLists[1].scopes: 'team' is not one of the bot's scopes" in problems
    assert "bots[0].commandLists[0].commands: title 'help' appears more than once" in problems


def test_an_invalid_package_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "appPackage.zip"
    with pytest.raises(InvalidPackageError) as refused:
        build_package(settings(teams_app_id="1234"), out)
    assert any(problem.startswith("id:") for problem in refused.value.problems)
    assert list(tmp_path.iterdir()) == []


def test_settings_come_from_the_environment() -> None:
    env = {
        "MicrosoftAppId": BOT_ID.upper(),
        "BOT_DOMAIN": "Switchboard.Example.com",
        "SWITCHBOARD_VALID_DOMAINS": "*.pbx.example.net, switchboard.example.com",
        "SWITCHBOARD_APP_VERSION": "2.0.1",
        "SWITCHBOARD_PRIVACY_URL": "https://example.org/p",
    }
    loaded = ManifestSettings.from_env(env)
    assert loaded.bot_app_id == BOT_ID
    assert loaded.teams_app_id == BOT_ID  # defaults to the bot's own app id
    assert loaded.version == "2.0.1"
    assert loaded.valid_domains == ("switchboard.example.com", "*.pbx.example.net")
    assert loaded.privacy_url == "https://example.org/p"
    assert loaded.website_url.startswith("https://")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MICROSOFT_APP_ID", "my-bot"),
        ("BOT_DOMAIN", "https://switchboard.example.com/api/messages"),
        ("SWITCHBOARD_APP_VERSION", "1.2"),
        ("SWITCHBOARD_TERMS_URL", "http://example.com/terms"),
    ],
)
def test_unusable_settings_are_refused_with_their_name(name: str, value: str) -> None:
    env = {"MICROSOFT_APP_ID": BOT_ID, name: value}
    with pytest.raises(ConfigError, match=re.escape(name)):
        ManifestSettings.from_env(env)


def run_build(tmp_path: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in APP_ENV_VARS}
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "manifest.build", "--out", str(tmp_path / "appPackage.zip")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_missing_app_id_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_build(tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "MICROSOFT_APP_ID" in lines[0]
    assert not (tmp_path / "appPackage.zip").exists()


def test_command_line_build_writes_the_package(tmp_path: Path) -> None:
    result = run_build(tmp_path, MICROSOFT_APP_ID=BOT_ID, BOT_DOMAIN="switchboard.example.com")
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(tmp_path / "appPackage.zip") as archive:
        written = json.loads(archive.read("manifest.json"))
    assert written["bots"][0]["botId"] == BOT_ID
    assert written["validDomains"] == ["switchboard.example.com"]
