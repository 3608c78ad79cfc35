"""Settings are read from the environment in one place (services/config.py), every variable
with its default declared once; a start with bad values reports each of them, one line each,
exit code 2, no traceback; and the composition root builds every service from that one object.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.cli import main
from services.config import (
    GraphSettings,
    PbxTrunkSettings,
    Settings,
    SettingsError,
    SyncSettings,
    as_environment,
    env_fields,
    variables,
)
from services.container import Services
from services.graph import GraphService
from services.passwords import PasswordVault

ROOT = Path(__file__).resolve().parent.parent
# Every variable the services and the bot read; none is set from the test runner's own env.
OWN = {name for name, _, _ in variables()}


def clean_env(**values: str) -> dict[str, str]:
    """The runner's environment without any Switchboard variable, plus `values`."""
    env = {k: v for k, v in os.environ.items() if k not in OWN}
    return env | values


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment with no Switchboard variable set."""
    for name in OWN:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _run(module: str, env: dict[str, str], *args: str, cwd: Path) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()


BAD = {
    "FIRST_SYNC_HOURS": "0.5",
    "NUMBER_QUARANTINE_DAYS": "-3",
    "SYNC_WORKERS": "many",
    "GRAPH_WRITE_LIMIT": "0",
    "GRAPH_CHECK_GLOBAL_ADMIN": "perhaps",
    "SYNC_POLL_SECONDS": "nan",
    "DEFAULT_PHONE_REGION": "Britain",
    "PBX_TEAMS_TRANSPORT": "carrier-pigeon",
    "BOT_PORT": "http",
    "MicrosoftAppType": "Everyone",
}


@pytest.mark.parametrize("module", ["bot", "services.cli", "services.provisioning"])
def test_every_bad_value_is_one_line_and_the_start_stops_with_code_2(
    tmp_path: Path, module: str
) -> None:
    env = clean_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}",
        SWITCHBOARD_SECRET_KEY_FILE=str(tmp_path / "secret.key"),
        **BAD,
    )
    args = ("enterprise", "list") if module == "services.cli" else ()
    code, lines = _run(module, env, *args, cwd=tmp_path)
    assert code == 2, lines
    assert not any("Traceback" in line for line in lines), lines
    assert len(lines) == len(BAD), lines
    for name, value in BAD.items():
        [line] = [line for line in lines if line.startswith(f"switchboard: error: {name} ")]
        assert repr(value) in line, line
    assert not (tmp_path / "sb.db").exists(), "nothing starts before the settings are good"


def test_values_that_do_not_fit_together_are_reported_with_the_others(environment) -> None:
    environment.setenv("PBX_BACKEND", "asterisk")
    environment.setenv("GRAPH_CLIENT_ID", "the-app")
    with pytest.raises(SettingsError) as refused:
        Settings.from_env()
    assert refused.value.problems == [
        "PBX_BACKEND=asterisk needs PBX_DATABASE_URL, the Asterisk realtime database "
        "(e.g. postgresql+asyncpg://asterisk@pbx-db/asterisk).",
        "GRAPH_CLIENT_ID and GRAPH_CLIENT_SECRET must be set together (or neither)",
    ]


def test_a_secret_that_does_not_parse_is_refused_without_showing_it(environment) -> None:
    secret = '{"tenant": {"clientId": "app", "clientSecret": "s3cr3t-value"'
    environment.setenv("GRAPH_TENANT_CREDENTIALS", secret)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env()
    [line] = refused.value.problems
    assert line.startswith("GRAPH_TENANT_CREDENTIALS must be a JSON object")
    assert "s3cr3t" not in line and "not shown" in line


def test_the_environment_is_read_into_each_concern(environment) -> None:
    environment.setenv("DATABASE_URL", "postgres://switchboard@db/switchboard")
    environment.setenv("PBX_PSTN_HOSTS", " carrier.example:5060 , backup.example ")
    environment.setenv("PBX_TEAMS_TRANSPORT", "TLS")
    environment.setenv("GRAPH_CHECK_GLOBAL_ADMIN", "off")
    environment.setenv("DEFAULT_USAGE_LOCATION", "us")
    environment.setenv(
        "GRAPH_TENANT_CREDENTIALS", '{"ABC": {"clientId": "app", "clientSecret": "s3cr3t"}}'
    )
    environment.setenv("SYNC_WORKERS", "4")
    environment.setenv("BOT_PORT", "8080")
    environment.setenv("NUMBER_QUARANTINE_DAYS", "")  # empty is unset: the default
    loaded = Settings.from_env()
    assert loaded.database_url == "postgresql+asyncpg://switchboard@db/switchboard"
    assert loaded.pbx_trunks.pstn_hosts == ("carrier.example:5060", "backup.example")
    assert loaded.pbx_trunks.teams_transport == "tls"
    assert loaded.graph.check_global_admin is False
    assert loaded.graph.usage_location == "US"
    assert loaded.graph.credential_for("abc") == ("app", "s3cr3t")
    assert "s3cr3t" not in repr(loaded)
    assert loaded.sync.workers == 4 and loaded.bot.port == 8080
    assert loaded.quarantine_days == 90


def test_settings_built_in_code_do_not_read_the_environment(environment) -> None:
    environment.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    environment.setenv("GRAPH_CLIENT_ID", "the-app")
    environment.setenv("SYNC_WORKERS", "9")
    built = Settings(quarantine_days=7)
    assert built == Settings(quarantine_days=7, graph=GraphSettings(), sync=SyncSettings())
    assert built.database_url.startswith("sqlite") and built.sync.workers == 1


SECTIONS = {"Settings": None, **{kind.__name__: name for name, kind in Settings.SECTIONS.items()}}
INTEGERS = [
    (name, SECTIONS[kind.__name__], item.name)
    for kind in (Settings, *Settings.SECTIONS.values())
    for item, name in env_fields(kind)
    if isinstance(item.default, int) and not isinstance(item.default, bool)
]


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    variable=st.sampled_from(INTEGERS),
    raw=st.one_of(
        st.integers(-(10**30), 10**30).map(str),
        st.text(
            st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20
        ),
    ),
)
def test_any_text_in_a_whole_number_variable_is_taken_or_named_in_one_line(
    environment, variable: tuple[str, str | None, str], raw: str
) -> None:
    name, section, field = variable
    try:
        with pytest.MonkeyPatch.context() as example:
            example.setenv(name, raw)
            loaded = Settings.from_env()
    except SettingsError as refused:
        [line] = refused.problems
        assert line.startswith(f"{name} must be "), line
        assert line.endswith(f", not {raw!r}"), line
    else:
        holder = loaded if section is None else getattr(loaded, section)
        value = getattr(holder, field)
        assert value == (int(raw) if raw.strip() else getattr(type(holder)(), field))


def test_every_variable_and_its_default_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in sorted(OWN) if f"`{name}`" not in readme]
    assert not missing, f"README.md's settings table lacks {missing}"


def test_only_the_settings_module_reads_the_environment() -> None:
    """bot/demo.py starts the demo's processes (its own ports, their environment) and is the
    one exception."""
    readers = []
    for folder in ("bot", "services", "cards"):
        for path in (ROOT / folder).rglob("*.py"):
            if (path.name == "config.py" and folder == "services") or path.name == "demo.py":
                continue
            if re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text()):
                readers.append(str(path.relative_to(ROOT)))
    assert readers == []


def test_the_region_for_national_numbers_is_default_phone_region(
    environment, tmp_path: Path, capsys
) -> None:
    environment.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    environment.setenv("SWITCHBOARD_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    environment.setenv("DEFAULT_PHONE_REGION", "us")
    created = [
        "enterprise", "create", "--name", "Fabrikam", "--tenant-id", "t-us",
        "--main-number", "(212) 555-0100", "--extensions", "100-199",
    ]  # fmt: skip
    assert main(created) == 0, capsys.readouterr().err
    assert "+1 212-555-0100" in capsys.readouterr().out


async def test_the_root_hands_the_graph_checks_to_the_constructors(tmp_path: Path) -> None:
    from services.db import Database

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'root.db'}")
    vault = PasswordVault.from_settings("", tmp_path / "secret.key")
    graph = GraphService(GraphSettings(client_id="app", client_secret="secret"))
    try:
        plain = Services.build(db, Settings(database_url=db.url), vault)
        assert plain.users.email_domain_check is None and plain.syncs.global_admin_check is None
        wired = Services.build(db, Settings(database_url=db.url), vault, graph=graph)
        assert wired.users.email_domain_check is not None
        assert wired.syncs.global_admin_check is not None
        unchecked = Settings(database_url=db.url, graph=GraphSettings(check_global_admin=False))
        quiet = Services.build(db, unchecked, vault, graph=graph)
        assert quiet.syncs.global_admin_check is None
        assert quiet.settings is unchecked and quiet.graph is graph
    finally:
        await graph.close()
        await db.dispose()
    await asyncio.sleep(0)


def test_the_trunk_defaults_are_microsofts_proxies() -> None:
    assert PbxTrunkSettings().teams_hosts[0] == "sip.pstnhub.microsoft.com:5061"


def test_settings_handed_to_a_child_process_come_back_the_same(environment) -> None:
    given_settings = Settings(
        database_url="postgresql+asyncpg://switchboard@db/switchboard",
        secret_key="a-key",
        quarantine_days=7,
        graph=GraphSettings(
            client_id="app",
            client_secret="s3cr3t",
            ca_bundle="/etc/ca.pem",
            check_global_admin=False,
            write_guard_seconds=0.25,
        ),
        sync=SyncSettings(workers=3, lease_seconds=2.5),
        pbx_trunks=PbxTrunkSettings(pstn_hosts=("carrier.example:5060", "backup.example")),
    )
    for name, value in as_environment(given_settings).items():
        environment.setenv(name, value)
    assert Settings.from_env() == given_settings


def test_the_bots_identity_is_reported_with_the_other_bad_values(tmp_path: Path) -> None:
    env = clean_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}",
        MicrosoftAppId="11111111-2222-3333-4444-555555555555",
        FIRST_SYNC_HOURS="soon",
    )
    code, lines = _run("bot", env, cwd=tmp_path)
    assert code == 2, lines
    assert lines == [
        "switchboard: error: FIRST_SYNC_HOURS must be a whole number, not 'soon'",
        "switchboard: error: MicrosoftAppPassword is required when MicrosoftAppId is set",
    ]


def test_the_examples_and_the_readme_name_no_variable_nothing_reads() -> None:
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#? ?([A-Za-z_]+)=", example, flags=re.M))
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration") : readme.index("## Operator CLI")]
    named |= {
        name for name in re.findall(r"`([A-Z][A-Za-z_]+)`", section) if "_" in name or "App" in name
    }
    assert named - OWN - {"TEST_DATABASE_URL"} == set()


def test_a_mismatch_is_reported_even_beside_a_value_that_does_not_parse(environment) -> None:
    environment.setenv("GRAPH_CLIENT_SECRET", "s3cr3t")
    environment.setenv("FIRST_SYNC_HOURS", "soon")
    with pytest.raises(SettingsError) as refused:
        Settings.from_env()
    assert refused.value.problems == [
        "FIRST_SYNC_HOURS must be a whole number, not 'soon'",
        "GRAPH_CLIENT_ID and GRAPH_CLIENT_SECRET must be set together (or neither)",
    ]
