"""Build the Teams app package: ``python -m manifest.build [--out PATH] [--schema PATH]``.

Fills ``manifest/manifest.json`` from the environment, validates the result
against the Teams manifest schema shipped in npm ``@microsoft/app-manifest``
(read from disk, never downloaded), checks the icons, and writes a zip holding
``manifest.json``, ``color.png`` and ``outline.png`` at its root.

Environment:

- ``MICROSOFT_APP_ID`` (required; ``MicrosoftAppId``, the bot runtime's name for
  it, is read when it is unset): the bot's Microsoft App ID.
- ``TEAMS_APP_ID``: the Teams app id; defaults to the bot's app id.
- ``BOT_DOMAIN``: host of the messaging endpoint, e.g. ``switchboard.example.com``.
- ``SWITCHBOARD_VALID_DOMAINS``: more domains, separated by commas or spaces.
- ``SWITCHBOARD_APP_VERSION``: app version (x.y.z); defaults to the project's.
- ``SWITCHBOARD_DEVELOPER_NAME``, ``SWITCHBOARD_WEBSITE_URL``,
  ``SWITCHBOARD_PRIVACY_URL``, ``SWITCHBOARD_TERMS_URL``: developer details.
- ``TEAMS_MANIFEST_SCHEMA``: path of ``MicrosoftTeams.schema.json`` to validate with.

Exit status: 0 when the package was written, 2 when the configuration is
unusable (one line on stderr), 1 when the manifest or the icons are invalid.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from jsonschema import (  # type: ignore[import-untyped]  # jsonschema ships no type hints
    Draft4Validator,
    Draft7Validator,
    FormatChecker,
    validators,
)
from PIL import Image
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable

MANIFEST_DIR: Final = Path(__file__).resolve().parent
TEMPLATE_PATH: Final = MANIFEST_DIR / "manifest.json"
REPO_ROOT: Final = MANIFEST_DIR.parent
DEFAULT_PACKAGE_PATH: Final = REPO_ROOT / "appPackage.zip"
SCHEMA_PACKAGE_DIR: Final = Path(
    "node_modules", "@microsoft", "app-manifest", "build", "json-schemas", "teams"
)
SCHEMA_FILE_NAME: Final = "MicrosoftTeams.schema.json"
SCHEMA_URL: Final = (
    "https://developer.microsoft.com/en-us/json-schemas/teams/v{version}/" + SCHEMA_FILE_NAME
)

ICON_SIZES: Final = {"color.png": (192, 192), "outline.png": (32, 32)}
WHITE: Final = (255, 255, 255)

DEFAULT_DEVELOPER_NAME: Final = "Switchboard"
DEFAULT_WEBSITE_URL: Final = "https://example.com/switchboard"
DEFAULT_PRIVACY_URL: Final = "https://example.com/switchboard/privacy"
DEFAULT_TERMS_URL: Final = "https://example.com/switchboard/terms"
FALLBACK_VERSION: Final = "1.0.0"

_PLACEHOLDER = re.compile(r"\$\{\{([A-Z][A-Z0-9_]*)\}\}")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_SEMVER = re.compile(r"^(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)$")
_DOMAIN = re.compile(
    r"^(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?::[0-9]{1,5})?$"
)

# Microsoft's own validator (ajv with draft-04) also enforces `const` and
# `if`/`then`, which the Teams schemas use although draft-04 predates them.
# Plain Draft4Validator would silently accept e.g. a wrong manifestVersion.
TeamsSchemaValidator = validators.extend(
    Draft4Validator,
    {"const": Draft7Validator.VALIDATORS["const"], "if": Draft7Validator.VALIDATORS["if"]},
)


class PackageError(Exception):
    """A problem that stops the package from being built; the message is for the operator."""


class ConfigError(PackageError):
    """The environment or the command line cannot produce a package."""


class InvalidPackageError(PackageError):
    """The rendered manifest or the icons break the Teams rules."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("the app package is invalid: " + "; ".join(self.problems))


@dataclass(frozen=True)
class ManifestSettings:
    """Everything that varies between deployments of the app package."""

    bot_app_id: str
    teams_app_id: str
    version: str
    valid_domains: tuple[str, ...] = ()
    developer_name: str = DEFAULT_DEVELOPER_NAME
    website_url: str = DEFAULT_WEBSITE_URL
    privacy_url: str = DEFAULT_PRIVACY_URL
    terms_url: str = DEFAULT_TERMS_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ManifestSettings:
        """Read the settings from environment variables, raising ConfigError when unusable."""
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(name, "").strip()

        bot_app_id = get("MICROSOFT_APP_ID") or get("MicrosoftAppId")
        if not bot_app_id:
            raise ConfigError(
                "MICROSOFT_APP_ID is not set: set it to the bot's Microsoft App ID "
                "(the Azure Bot's app registration GUID) to build the Teams app package"
            )
        _require_guid("MICROSOFT_APP_ID", bot_app_id)
        teams_app_id = get("TEAMS_APP_ID") or bot_app_id
        _require_guid("TEAMS_APP_ID", teams_app_id)

        version = get("SWITCHBOARD_APP_VERSION") or project_version()
        if not _SEMVER.match(version):
            raise ConfigError(
                f"SWITCHBOARD_APP_VERSION must look like 1.2.3 (Teams wants x.y.z), got {version!r}"
            )

        domains = [get("BOT_DOMAIN"), *re.split(r"[\s,]+", get("SWITCHBOARD_VALID_DOMAINS"))]
        urls = {
            "SWITCHBOARD_WEBSITE_URL": get("SWITCHBOARD_WEBSITE_URL") or DEFAULT_WEBSITE_URL,
            "SWITCHBOARD_PRIVACY_URL": get("SWITCHBOARD_PRIVACY_URL") or DEFAULT_PRIVACY_URL,
            "SWITCHBOARD_TERMS_URL": get("SWITCHBOARD_TERMS_URL") or DEFAULT_TERMS_URL,
        }
        for name, url in urls.items():
            _require_https_url(name, url)
        return cls(
            bot_app_id=bot_app_id.lower(),
            teams_app_id=teams_app_id.lower(),
            version=version,
            valid_domains=normalize_domains(domains),
            developer_name=get("SWITCHBOARD_DEVELOPER_NAME") or DEFAULT_DEVELOPER_NAME,
            website_url=urls["SWITCHBOARD_WEBSITE_URL"],
            privacy_url=urls["SWITCHBOARD_PRIVACY_URL"],
            terms_url=urls["SWITCHBOARD_TERMS_URL"],
        )

    def placeholders(self) -> dict[str, str | list[str]]:
        """Return the values for the template's ``${{NAME}}`` placeholders."""
        return {
            "MICROSOFT_APP_ID": self.bot_app_id,
            "TEAMS_APP_ID": self.teams_app_id,
            "APP_VERSION": self.version,
            "DEVELOPER_NAME": self.developer_name,
            "WEBSITE_URL": self.website_url,
            "PRIVACY_URL": self.privacy_url,
            "TERMS_OF_USE_URL": self.terms_url,
            "VALID_DOMAINS": list(self.valid_domains),
        }


def _require_guid(name: str, value: str) -> None:
    if not _GUID.match(value):
        raise ConfigError(
            f"{name} must be a GUID like 00000000-0000-0000-0000-000000000000, got {value!r}"
        )


def _require_https_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise ConfigError(f"{name} must be an https:// URL, got {value!r}")


def normalize_domains(values: Sequence[str]) -> tuple[str, ...]:
    """Lower-case, de-duplicate and check domain names, dropping empty entries.

    Teams wants bare host names (``bot.example.com`` or ``*.example.com``), so a
    URL or a path is refused instead of being guessed at.
    """
    domains: list[str] = []
    for raw in values:
        domain = raw.strip().lower()
        if not domain:
            continue
        if "://" in domain or "/" in domain or not _DOMAIN.match(domain):
            raise ConfigError(
                f"{domain!r} is not a domain: give a host name such as "
                "switchboard.example.com (no https://, no path) in BOT_DOMAIN "
                "or SWITCHBOARD_VALID_DOMAINS"
            )
        if domain not in domains:
            domains.append(domain)
    return tuple(domains)


def project_version() -> str:
    """Return the installed ``switchboard`` distribution's version, or 1.0.0 if unknown."""
    try:
        version = importlib.metadata.version("switchboard")
    except importlib.metadata.PackageNotFoundError:
        return FALLBACK_VERSION
    return version if _SEMVER.match(version) else FALLBACK_VERSION


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Read the manifest template."""
    with path.open(encoding="utf-8") as file:
        template: dict[str, Any] = json.load(file)
    return template


def render_manifest(
    settings: ManifestSettings, template: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return the manifest with every ``${{NAME}}`` placeholder replaced.

    A string that is exactly one placeholder takes the value as is; when that
    value is a list and the string is an array item, the list is spliced into
    the array (``["${{VALID_DOMAINS}}"]`` becomes the list of domains).
    """
    values = settings.placeholders()
    source = load_template() if template is None else copy.deepcopy(dict(template))
    rendered = _fill(source, values)
    if not isinstance(rendered, dict):
        raise ConfigError("the manifest template is not a JSON object")
    return rendered


def _fill(node: Any, values: Mapping[str, str | list[str]]) -> Any:
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        items: list[Any] = []
        for item in node:
            whole = _PLACEHOLDER.fullmatch(item) if isinstance(item, str) else None
            value = values.get(whole.group(1)) if whole else None
            if isinstance(value, list):
                items.extend(value)
            else:
                items.append(_fill(item, values))
        return items
    if isinstance(node, str):
        return _PLACEHOLDER.sub(lambda match: _scalar(match.group(1), values), node)
    return node


def _scalar(name: str, values: Mapping[str, str | list[str]]) -> str:
    if name not in values:
        raise ConfigError(f"the manifest template uses an unknown placeholder ${{{{{name}}}}}")
    value = values[name]
    if isinstance(value, list):
        raise ConfigError(f"${{{{{name}}}}} is a list and must be a whole array item")
    return value


def find_schema(manifest_version: str, explicit: Path | None = None) -> Path:
    """Locate ``MicrosoftTeams.schema.json`` for ``manifest_version`` on disk."""
    if explicit is not None:
        if explicit.is_file():
            return explicit
        raise ConfigError(f"the Teams manifest schema {explicit} does not exist")
    relative = SCHEMA_PACKAGE_DIR / f"v{manifest_version}" / SCHEMA_FILE_NAME
    for root in dict.fromkeys((REPO_ROOT, Path.cwd())):
        if (root / relative).is_file():
            return root / relative
    raise ConfigError(
        f"the Teams manifest schema v{manifest_version} is missing ({relative}): "
        "run `npm install` in the repository root (make package does it)"
    )


def load_schema(path: Path) -> dict[str, Any]:
    """Read a JSON schema file."""
    with path.open(encoding="utf-8") as file:
        schema: dict[str, Any] = json.load(file)
    return schema


def _offline_registry(schema_dir: Path) -> Registry[Any]:
    """A reference registry that only ever reads sibling schema files from disk."""

    def retrieve(uri: str) -> Resource[Any]:
        candidate = schema_dir / Path(urlsplit(uri).path).name
        if candidate.is_file():
            return Resource.from_contents(load_schema(candidate))
        raise LookupError(f"{uri} is not in {schema_dir}, and schemas are never downloaded")

    return Registry(retrieve=retrieve)  # type: ignore[call-arg]


def validate_manifest(manifest: Mapping[str, Any], schema_path: Path | None = None) -> list[str]:
    """Return every problem with ``manifest``: schema errors first, then Teams' extra rules.

    The schema is the one for the manifest's own ``manifestVersion``, read from
    disk (``schema_path`` overrides it); an empty list means the manifest is valid.
    """
    version = manifest.get("manifestVersion")
    if not isinstance(version, str):
        return ["manifestVersion: missing or not a string"]
    path = find_schema(version, schema_path)
    validator = TeamsSchemaValidator(
        load_schema(path),
        registry=_offline_registry(path.parent),
        format_checker=FormatChecker(),
    )
    try:
        errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    except Unresolvable as error:
        return [f"{path}: cannot resolve {error} offline"]
    problems = [f"{_json_path(error.absolute_path)}: {error.message}" for error in errors]
    problems.extend(_teams_rules(manifest, version))
    return problems


def _json_path(parts: Iterator[str | int] | Sequence[str | int]) -> str:
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)
    return path.lstrip(".") or "(manifest)"


def _object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one; the schema reports the difference."""
    return value if isinstance(value, dict) else {}


def _objects(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects in ``value``, with their indexes, if it is an array."""
    if not isinstance(value, list):
        return []
    return [(index, item) for index, item in enumerate(value) if isinstance(item, dict)]


def _teams_rules(manifest: Mapping[str, Any], version: str) -> Iterator[str]:
    """Rules Teams applies that the JSON schema cannot express."""
    expected_url = SCHEMA_URL.format(version=version)
    if manifest.get("$schema") != expected_url:
        yield f"$schema: expected {expected_url!r} for manifestVersion {version}"
    if isinstance(manifest.get("version"), str) and not _SEMVER.match(manifest["version"]):
        yield f"version: {manifest['version']!r} is not x.y.z"
    for index, bot in _objects(manifest.get("bots")):
        scopes: list[Any] = bot["scopes"] if isinstance(bot.get("scopes"), list) else []
        for list_index, command_list in _objects(bot.get("commandLists")):
            where = f"bots[{index}].commandLists[{list_index}]"
            for scope in command_list.get("scopes") or []:
                if scope not in scopes:
                    yield f"{where}.scopes: {scope!r} is not one of the bot's scopes"
            titles = [command.get("title") for _, command in _objects(command_list.get("commands"))]
            for title in sorted({t for t in titles if titles.count(t) > 1}, key=str):
                yield f"{where}.commands: title {title!r} appears more than once"
    icons = _object(manifest.get("icons"))
    for name in ("color", "outline"):
        icon = icons.get(name)
        if isinstance(icon, str) and (Path(icon).name != icon or not icon.endswith(".png")):
            yield f"icons.{name}: {icon!r} must be a PNG file at the package root"


def check_icons(icon_dir: Path = MANIFEST_DIR) -> list[str]:
    """Return problems with ``color.png`` and ``outline.png`` in ``icon_dir``."""
    problems: list[str] = []
    for name, size in ICON_SIZES.items():
        path = icon_dir / name
        if not path.is_file():
            problems.append(f"{name}: missing in {icon_dir}")
            continue
        with Image.open(path) as image:
            if image.format != "PNG":
                problems.append(f"{name}: is {image.format}, not PNG")
            if image.size != size:
                problems.append(
                    f"{name}: is {image.size[0]}x{image.size[1]}, not {size[0]}x{size[1]}"
                )
            rgba = image.convert("RGBA")
        pixels = rgba.get_flattened_data()
        alphas = [pixel[3] for pixel in pixels]  # type: ignore[index]
        if name == "color.png" and min(alphas) < 255:
            problems.append(f"{name}: must be fully opaque")
        if name == "outline.png":
            if 0 not in alphas:
                problems.append(f"{name}: needs a transparent background")
            if max(alphas) == 0:
                problems.append(f"{name}: is empty")
            if any(p[3] > 0 and tuple(p[:3]) != WHITE for p in pixels):  # type: ignore[index]
                problems.append(f"{name}: may only hold white and transparent pixels")
    return problems


def build_package(
    settings: ManifestSettings,
    out_path: Path = DEFAULT_PACKAGE_PATH,
    *,
    schema_path: Path | None = None,
    icon_dir: Path = MANIFEST_DIR,
    template: Mapping[str, Any] | None = None,
) -> Path:
    """Render, validate and zip the app package; return the path written.

    Raises InvalidPackageError (nothing is written) when the manifest or the
    icons are invalid, ConfigError when the schema cannot be found.
    """
    manifest = render_manifest(settings, template)
    problems = validate_manifest(manifest, schema_path) + check_icons(icon_dir)
    icons = _object(manifest.get("icons"))
    for name in ("color", "outline"):
        if icons.get(name) != f"{name}.png":
            problems.append(f"icons.{name}: must be {name}.png, the file the package carries")
    if problems:
        raise InvalidPackageError(problems)

    out_path = out_path.resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_bytes = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    entries = [
        ("manifest.json", manifest_bytes),
        *((name, (icon_dir / name).read_bytes()) for name in ICON_SIZES),
    ]
    # Write beside the target and rename, so a failed build never leaves half a zip.
    with tempfile.NamedTemporaryFile(
        dir=out_path.parent, prefix=f".{out_path.name}.", delete=False
    ) as tmp:
        tmp_path = Path(tmp.name)
    try:
        with zipfile.ZipFile(tmp_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries:
                # A fixed timestamp keeps the zip byte-identical for identical input.
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)
        tmp_path.chmod(0o644)  # NamedTemporaryFile creates 0600; a package is not a secret
        tmp_path.replace(out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    """Build the package from the environment; see the module docstring for exit codes."""
    parser = argparse.ArgumentParser(
        prog="python -m manifest.build", description="Build the Switchboard Teams app package."
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_PACKAGE_PATH, help="zip to write (default: %(default)s)"
    )
    parser.add_argument(
        "--schema",
        type=Path,
        default=None,
        help="MicrosoftTeams.schema.json to validate with (default: $TEAMS_MANIFEST_SCHEMA, "
        "else the one in node_modules)",
    )
    args = parser.parse_args(argv)
    schema_path = args.schema
    if schema_path is None and os.environ.get("TEAMS_MANIFEST_SCHEMA"):
        schema_path = Path(os.environ["TEAMS_MANIFEST_SCHEMA"])
    try:
        settings = ManifestSettings.from_env()
        path = build_package(settings, args.out, schema_path=schema_path)
    except InvalidPackageError as error:
        print(f"{parser.prog}: error: the app package is invalid:", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    except PackageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} (bot {settings.bot_app_id}, app version {settings.version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
