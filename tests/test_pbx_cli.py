"""`switchboard pbx reconcile`: reports drift, repairs it with --fix, and refuses bad settings
with one line and exit code 2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from services.cli import main
from services.config import Settings
from services.db import Database
from services.directory import Directory
from services.models import LicenceProduct
from services.passwords import PasswordVault
from services.pbx.asterisk import AsteriskBackend, create_asterisk_tables, extensions, ps_endpoints
from services.pbx.pusher import PbxPusher
from services.users import NewUser
from tests.conftest import admin_of, seed_enterprise

TENANT = "tenant-contoso"


@pytest.fixture
def pbx_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}",
        "SWITCHBOARD_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
        "PBX_BACKEND": "asterisk",
        "PBX_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'asterisk.db'}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


async def _provision_and_plant(env: dict[str, str]) -> tuple[int, int]:
    """Two users on the PBX, then drift: Ada's caller ID edited, Bob's endpoint deleted."""
    db = Database(env["DATABASE_URL"])
    await db.migrate()
    settings = Settings.from_env()
    vault = PasswordVault.from_settings("", settings.secret_key_file)
    directory = Directory.build(db, settings, vault)
    backend = AsteriskBackend(env["PBX_DATABASE_URL"])
    try:
        await create_asterisk_tables(backend.engine)
        ent = await seed_enterprise(directory, tenant_id=TENANT)
        ada = await directory.users.create(
            admin_of(ent), ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
        )
        bob = await directory.users.create(
            admin_of(ent), ent, NewUser("Bob", "bob@contoso.com", LicenceProduct.ESSENTIALS)
        )
        await PbxPusher(db, backend).run_once()
        async with backend.engine.begin() as connection:
            await connection.execute(
                update(ps_endpoints)
                .where(ps_endpoints.c.id == f"sb-e{ent}-u{ada.id}")
                .values(callerid='"Mallory" <+449999999999>')
            )
            await connection.execute(
                delete(ps_endpoints).where(ps_endpoints.c.id == f"sb-e{ent}-u{bob.id}")
            )
            await connection.execute(
                delete(extensions).where(extensions.c.appdata == f"PJSIP/sb-e{ent}-u{bob.id}")
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
        f'drift\tcaller_id\tcaller ID of sb-e1-u{ada} (Ada) differs: the PBX has "Mallory"'
        in report
    )
    assert f"drift\tmissing_line\tsb-e1-u{bob} (Bob) has no endpoint on the PBX" in report
    assert "drift\tmissing_route\tnumber +44 20 7946 0001 is not routed" in report
    assert "4 differences found. Run again with --fix to repair them." in report
    assert main(["pbx", "reconcile", "--tenant-id", TENANT, "--fix"]) == 0
    assert "Repaired 4 differences; the PBX now matches the directory." in capsys.readouterr().out
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
    ],
    ids=["unknown-backend", "no-url", "unreachable"],
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
