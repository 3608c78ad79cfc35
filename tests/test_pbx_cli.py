"""`switchboard pbx reconcile` and `pbx config`: drift reported and repaired on Asterisk's real
schema, the static configuration written, and bad settings refused with one line and exit 2."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from services.cli import main
from services.config import Settings
from services.container import Services
from services.db import Database
from services.domain import LicenceProduct
from services.passwords import PasswordVault
from services.pbx.asterisk import AsteriskBackend, extensions, ps_endpoints
from services.pbx.credentials import DeskPhones
from services.pbx.pusher import PbxPusher
from services.users import NewUser
from tests.conftest import admin_of, seed_enterprise

TENANT = "tenant-contoso"
pytestmark = pytest.mark.postgres


@pytest.fixture
def pbx_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asterisk_url: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}",
        "SWITCHBOARD_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
        "PBX_BACKEND": "asterisk",
        # The spelling Asterisk's own samples use: Switchboard picks its async driver itself.
        "PBX_DATABASE_URL": asterisk_url.replace("postgresql+asyncpg://", "postgresql://"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


async def _provision_and_plant(env: dict[str, str]) -> tuple[int, int]:
    """Two users on the PBX, then drift: Ada's caller ID edited, Bob's routes deleted."""
    db = Database(env["DATABASE_URL"])
    await db.migrate()
    settings = Settings.from_env()
    vault = PasswordVault.from_settings("", settings.secret_key_file)
    services = Services.build(db, settings, vault)
    backend = AsteriskBackend(env["PBX_DATABASE_URL"])
    try:
        ent = await seed_enterprise(services, tenant_id=TENANT)
        ada = await services.users.create(
            admin_of(ent), ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
        )
        bob = await services.users.create(
            admin_of(ent), ent, NewUser("Bob", "bob@contoso.com", LicenceProduct.ESSENTIALS)
        )
        await DeskPhones(db, "asterisk").issue(admin_of(ent), ent, ada.id)
        await PbxPusher(db, backend).run_once()
        async with backend.engine.begin() as connection:
            await connection.execute(
                update(ps_endpoints)
                .where(ps_endpoints.c.id == f"sb-e{ent}-u{ada.id}")
                .values(callerid='"Mallory" <+449999999999>')
            )
            await connection.execute(
                delete(extensions).where(
                    extensions.c.context.in_([f"sb-e{ent}-ring", f"sb-e{ent}-ddi"]),
                    extensions.c.exten.in_([f"u{bob.id}", bob.number]),
                )
            )
        return ada.id, bob.id
    finally:
        await backend.close()
        await db.dispose()


def test_reconcile_reports_then_fixes_drift(pbx_env: dict[str, str], capsys) -> None:
    ada, bob = asyncio.run(_provision_and_plant(pbx_env))
    assert main(["pbx", "reconcile", "--tenant-id", TENANT]) == 0
    report = capsys.readouterr().out
    assert "Checked 2 lines on the asterisk PBX." in report
    assert (
        f"drift\tcaller_id\tcaller ID of sb-e1-u{ada} (Ada) differs on the PBX (callerid)" in report
    )
    assert (
        f"drift\tmissing_line\tsb-e1-u{bob} (Bob) has nothing on the PBX that rings them" in report
    )
    assert "drift\tmissing_route\tnumber +44 20 7946 0001 is not routed" in report
    assert "3 differences found. Run again with --fix to repair them." in report
    assert main(["pbx", "reconcile", "--tenant-id", TENANT, "--fix"]) == 0
    assert "Repaired 3 differences; the PBX now matches the directory." in capsys.readouterr().out
    assert main(["pbx", "reconcile", "--tenant-id", TENANT]) == 0
    assert "No drift: the PBX matches the directory." in capsys.readouterr().out


@pytest.mark.parametrize(
    ("backend", "url", "message"),
    [
        ("freeswitch", "", "PBX_BACKEND is “freeswitch”; use builtin or asterisk."),
        ("asterisk", "", "PBX_BACKEND=asterisk needs PBX_DATABASE_URL"),
        (
            "asterisk",
            "postgresql+asyncpg://asterisk@127.0.0.1:1/asterisk",
            "The PBX did not answer or refused the change (",
        ),
        ("asterisk", "postgres://asterisk@127.0.0.1:1/asterisk", "did not answer"),
        ("asterisk", "mysql://asterisk@db/asterisk", "PBX_DATABASE_URL is “mysql://...”"),
        ("asterisk", "sqlite:///var/asterisk.db", "use postgresql://..."),
        ("asterisk", "asterisk-db", "PBX_DATABASE_URL is not a URL"),
    ],
    ids=["unknown-backend", "no-url", "unreachable", "postgres-scheme", "mysql", "sqlite", "bare"],
)
def test_reconcile_refuses_with_one_line(
    pbx_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    backend: str,
    url: str,
    message: str,
) -> None:
    assert (
        main(
            [
                "enterprise",
                "create",
                "--name",
                "Contoso",
                "--tenant-id",
                TENANT,
                "--main-number",
                "020 7946 1000",
                "--extensions",
                "1000-1099",
            ]
        )
        == 0
    )
    capsys.readouterr()
    monkeypatch.setenv("PBX_BACKEND", backend)
    monkeypatch.setenv("PBX_DATABASE_URL", url)
    assert main(["pbx", "reconcile", "--tenant-id", TENANT]) == 2
    err = capsys.readouterr().err
    assert err.startswith("switchboard: error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["pbx", "reconcile", "--tenant-id", "nobody"]) == 2


def test_pbx_config_writes_the_static_configuration(
    pbx_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    asyncio.run(_provision_and_plant(pbx_env))
    out = tmp_path / "asterisk-etc"
    # Without the carrier's trunk there is nothing to write yet: one line, exit 2.
    assert main(["pbx", "config", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "PBX_PSTN_HOSTS" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("PBX_PSTN_HOSTS", "carrier.example:5060")
    monkeypatch.setenv("PBX_PSTN_MATCH", "192.0.2.10")
    monkeypatch.setenv("PBX_TEAMS_TRANSPORT", "tls")
    assert main(["pbx", "config", "--out", str(out)]) == 2
    assert "PBX_TLS_CERT_FILE" in capsys.readouterr().err
    monkeypatch.setenv("PBX_TLS_CERT_FILE", "/etc/asterisk/keys/sbc.crt")
    monkeypatch.setenv("PBX_TLS_KEY_FILE", "/etc/asterisk/keys/sbc.key")
    monkeypatch.setenv("PBX_SBC_FQDN", "sbc.provider.example")
    assert main(["pbx", "config", "--out", str(out)]) == 0
    assert "Static configuration for 1 enterprises" in capsys.readouterr().out
    files = {path.name: path for path in out.iterdir()}
    assert set(files) == {
        "pjsip.conf",
        "extensions.conf",
        "extconfig.conf",
        "sorcery.conf",
        "res_pgsql.conf",
    }
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pjsip = files["pjsip.conf"].read_text()
    assert "contact=sip:sip.pstnhub.microsoft.com:5061;transport=tls" in pjsip
    assert "match=52.112.0.0/14" in pjsip and "match=192.0.2.10" in pjsip
    assert pjsip.count("identify_by=ip") == 2
    assert pjsip.count("media_encryption=sdes") == 1  # Teams media is SRTP; the carrier's not
    assert "external_signaling_hostname=sbc.provider.example" in pjsip
    assert "external_signaling_port=5061" in pjsip
    dialplan = files["extensions.conf"].read_text()
    for context in ("sb-e1-ext", "sb-e1-ddi", "sb-e1-ring", "sb-e1-id"):
        assert f"[{context}]\nswitch => Realtime/@extensions" in dialplan
    assert "include => sb-e1-ddi" in dialplan and "[sb-e1-dial]" in dialplan


def test_hunt_groups_get_numbers_from_the_command_line(pbx_env: dict[str, str], capsys) -> None:
    asyncio.run(_provision_and_plant(pbx_env))
    create = ["huntgroups", "create", "--tenant-id", TENANT, "--name", "Sales"]
    assert main([*create, "--extension", "1050", "--number", "020 7946 0050"]) == 0
    assert "reached at extension 1050, +44 20 7946 0050" in capsys.readouterr().out
    # Taken numbers and extensions are refused, with the reason.
    assert main([*create[:-1], "Support", "--extension", "1050"]) == 2
    assert "Extension 1050 is already taken" in capsys.readouterr().err
    assert main([*create[:-1], "Support", "--number", "+442079460000"]) == 2
    assert "is already assigned" in capsys.readouterr().err
    configure = ["huntgroups", "configure", "--tenant-id", TENANT, "--name", "Sales"]
    assert main([*configure, "--strategy", "rrmemory", "--number", ""]) == 0
    assert "extension 1050 (Round robin)" in capsys.readouterr().out
    assert main(["huntgroups", "list", "--tenant-id", TENANT]) == 0
    assert "Sales\tsb-e1-g1\textension 1050\trrmemory\t0 members" in capsys.readouterr().out
