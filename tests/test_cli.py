"""The operator CLI: it does the job, and bad input gets one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import main

TENANT = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "SWITCHBOARD_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _setup(tmp_path: Path) -> None:
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
                "1000-1999",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "numbers",
                "import",
                "--tenant-id",
                TENANT,
                "--range",
                "+442079460000",
                "+442079460999",
            ]
        )
        == 0
    )


def test_operator_sets_up_an_enterprise(cli_env, tmp_path: Path, capsys) -> None:
    _setup(tmp_path)
    csv = tmp_path / "more.csv"
    csv.write_text("number\n+442079470001\n020 7947 0002\n", encoding="utf-8")
    assert main(["numbers", "import", "--tenant-id", TENANT, "--csv", str(csv)]) == 0
    assert (
        main(["licences", "set", "--tenant-id", TENANT, "--essentials", "10", "--basic", "5"]) == 0
    )
    assert (
        main(
            [
                "admin",
                "grant",
                "--aad-object-id",
                "AAD-1",
                "--role",
                "global-admin",
                "--tenant-id",
                TENANT,
                "--name",
                "Gail",
            ]
        )
        == 0
    )
    assert main(["admin", "grant", "--aad-object-id", "sp-1", "--role", "service-provider"]) == 0
    capsys.readouterr()
    assert main(["numbers", "free", "--tenant-id", TENANT, "--digits", "1111"]) == 0
    out = capsys.readouterr()
    assert out.out.split() == ["+442079461111"] or out.out.split() == []
    assert main(["numbers", "free", "--tenant-id", TENANT, "--digits", "0002"]) == 0
    assert capsys.readouterr().out.split() == ["+442079460002", "+442079470002"]
    assert main(["licences", "set", "--tenant-id", TENANT, "--basic", "6"]) == 0
    assert "Basic: 0 of 6 in use" in capsys.readouterr().out
    assert main(["directory", "--tenant-id", TENANT, "--sort", "extension"]) == 0
    assert capsys.readouterr().out.startswith("name\temail\tnumber")
    assert main(["enterprise", "list"]) == 0
    assert TENANT in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["numbers", "import", "--tenant-id", "nope", "--range", "1", "2"],
            "No enterprise has tenant id nope",
        ),
        (
            ["numbers", "import", "--tenant-id", TENANT, "--range", "abc", "+442079460001"],
            "is not a phone number",
        ),
        (["numbers", "import", "--tenant-id", TENANT, "--csv", "/no/such/file.csv"], "cannot read"),
        (["licences", "set", "--tenant-id", TENANT, "--essentials", "-3"], "whole number"),
        (["licences", "set", "--tenant-id", TENANT], "give --essentials"),
        (
            [
                "enterprise",
                "create",
                "--name",
                "X",
                "--tenant-id",
                TENANT,
                "--main-number",
                "+442079461000",
                "--extensions",
                "1000-1999",
            ],
            "already exists",
        ),
        (
            [
                "enterprise",
                "create",
                "--name",
                "X",
                "--tenant-id",
                "t2",
                "--main-number",
                "+442079461000",
                "--extensions",
                "9-1",
            ],
            "ends before it starts",
        ),
        (
            ["admin", "grant", "--aad-object-id", "x", "--role", "global-admin"],
            "--tenant-id is required",
        ),
        (["admin", "grant", "--aad-object-id", "x", "--role", "king"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    cli_env, tmp_path: Path, argv: list[str], expected: str
) -> None:
    _setup(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **cli_env},
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_help_everywhere() -> None:
    for argv in (["--help"], ["numbers", "import", "--help"], ["admin", "grant", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0


@pytest.mark.parametrize(
    "spelling",
    ["sqlite:///{path}", "sqlite+aiosqlite:///{path}", "sqlite3:///{path}"],
)
def test_database_urls_are_taken_as_operators_write_them(
    cli_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, spelling: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", spelling.format(path=tmp_path / "spelled.db"))
    assert main(["enterprise", "list"]) == 0
    assert (tmp_path / "spelled.db").exists()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://switchboard@db/switchboard", "DATABASE_URL is “mysql://...”"),
        ("var/switchboard.db", "DATABASE_URL is not a URL"),
    ],
)
def test_a_database_url_switchboard_cannot_use_is_one_line(
    cli_env, monkeypatch: pytest.MonkeyPatch, capsys, url: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["enterprise", "list"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "use postgresql://... or sqlite://..." in err
    assert len(err.strip().splitlines()) == 1
