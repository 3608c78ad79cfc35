"""Startup that cannot race or crash: processes started together on an empty database all
migrate it, and a bad setting stops the process with one clear line."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from tests.conftest import PG_URL, extra_run_database

ON_POSTGRES = pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL is not set")


async def _switchboard(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, (out + err).decode()


@ON_POSTGRES
@pytest.mark.postgres
async def test_commands_started_together_on_an_empty_database_all_succeed(tmp_path) -> None:
    url = await extra_run_database("startup")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SWITCHBOARD_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
        "SWITCHBOARD_SECRET_KEY": "",
    }
    results = await asyncio.gather(
        *(
            _switchboard(
                env,
                "enterprise",
                "create",
                "--name",
                f"Enterprise {i}",
                "--tenant-id",
                f"tenant-{i}",
                "--main-number",
                f"+44 20 7946 10{i:02d}",
                "--extensions",
                "1000-1999",
            )
            for i in range(4)
        )
    )
    for code, output in results:
        assert code == 0, output
        assert "Traceback" not in output


@pytest.mark.parametrize(
    ("name", "value"),
    [("FIRST_SYNC_HOURS", "0.5"), ("LATER_SYNC_HOURS", "soon"), ("NUMBER_QUARANTINE_DAYS", "-")],
)
async def test_a_bad_setting_is_one_clear_line(tmp_path, name: str, value: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}",
        "SWITCHBOARD_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
        name: value,
    }
    code, output = await _switchboard(env, "directory", "--tenant-id", "nobody")
    assert code == 2, output
    assert "Traceback" not in output
    [line] = output.strip().splitlines()
    assert name in line and repr(value) in line, line


@pytest.mark.parametrize(
    ("name", "value"),
    [("FIRST_SYNC_HOURS", "0.5"), ("BOT_PORT", "http"), ("MicrosoftAppType", "Everyone")],
)
async def test_the_bot_refuses_a_bad_setting_with_one_line(tmp_path, name: str, value: str) -> None:
    env = {**os.environ, name: value, "LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode != 0
    [line] = (out + err).decode().strip().splitlines()
    assert name in line and repr(value) in line, line
