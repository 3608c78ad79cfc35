"""`switchboard users export|import|resume`: the same preview as the admins', then apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.bulk.service import read_result
from services.cli import main

TENANT = "22222222-3333-4444-5555-666666666666"


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("SWITCHBOARD_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    for argv in (
        ["enterprise", "create", "--name", "Contoso", "--tenant-id", TENANT,
         "--main-number", "020 7946 1000", "--extensions", "1000-1999"],
        ["numbers", "import", "--tenant-id", TENANT, "--range", "+442079460000", "+442079460099"],
        ["licences", "set", "--tenant-id", TENANT, "--essentials", "10", "--basic", "5"],
    ):  # fmt: skip
        assert main(argv) == 0


def test_export_edit_preview_apply_and_export_again(
    cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blank = tmp_path / "template.csv"
    assert main(["users", "export", "--template", str(blank)]) == 0
    header = blank.read_text(encoding="utf-8-sig").strip()
    assert header.startswith("Name,E-mail,Licence,Number,Extension,Caller ID,")
    people = tmp_path / "people.csv"
    people.write_text(
        header + "\n"
        "Ada Lovelace,ada@contoso.example,Essentials,020 7946 0042,1042,,,,,,,\n"
        "Bob Basic,bob@contoso.example,Basic,,,,,,,,,\n"
        "Cy Wrong,cy@contoso.example,Basic,+44 20 7946 0043,,,,,,,,\n",
        encoding="utf-8",
    )
    capsys.readouterr()
    assert main(["users", "import", "--tenant-id", TENANT, str(people)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"Preview of {people}: 2 to create, 0 to update, 0 to remove, 0 unchanged, 1 rejected."
    )
    assert out[1] == (
        "rejected\tline 4\tcy@contoso.example\tBasic licences have no direct number; "
        "leave the number empty or choose Essentials."
    )
    assert out[2].startswith("create\tline 2\tada@contoso.example\tEssentials; number +44 20 7946")
    token = out[-2].split()[1]
    assert out[-1].startswith("Nothing was changed.")

    result = tmp_path / "result.csv"
    argv = ["users", "import", "--tenant-id", TENANT, str(people), "--apply", "--token", token]
    assert main([*argv, "--result", str(result)]) == 0
    printed = capsys.readouterr().out
    assert (
        "Import 1: 2 applied, 0 failed, 1 rejected in the preview, 0 unchanged; finished."
        in printed
    )
    assert [(r["E-mail"], r["Result"]) for r in read_result(result.read_bytes())] == [
        ("ada@contoso.example", "applied"),
        ("bob@contoso.example", "applied"),
        ("cy@contoso.example", "rejected"),
    ]
    # The same token again: the directory has changed since, so nothing is applied.
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().endswith("then apply with its token.")
    assert len(captured.err.strip().splitlines()) == 1

    exported = tmp_path / "export.csv"
    assert main(["users", "export", "--tenant-id", TENANT, str(exported)]) == 0
    assert "Exported 2 users" in capsys.readouterr().out
    rows = read_result(exported.read_bytes())
    assert [(r["Name"], r["Number"], r["Extension"]) for r in rows] == [
        ("Ada Lovelace", "+44 20 7946 0042", "1042"),
        ("Bob Basic", "", "1000"),
    ]
    assert main(["users", "import", "--tenant-id", TENANT, str(exported)]) == 0
    assert "0 to create, 0 to update, 0 to remove, 2 unchanged" in capsys.readouterr().out
    assert main(["users", "resume", "--tenant-id", TENANT]) == 0
    assert "No import of this enterprise was interrupted." in capsys.readouterr().out


def test_bad_files_get_one_line_and_exit_code_2(
    cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.csv"
    assert main(["users", "import", "--tenant-id", TENANT, str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"switchboard: error: Cannot read {missing}: No such file or directory.\n"
    )
    big = tmp_path / "big.csv"
    big.write_bytes(b"Name,E-mail\n" + b"a" * (6 * 1024 * 1024))
    assert main(["users", "import", "--tenant-id", TENANT, str(big), "--apply"]) == 2
    assert "Switchboard takes files of up to 5 MB" in capsys.readouterr().err
    assert main(["users", "export", str(tmp_path / "x.csv")]) == 2
    assert "Give --tenant-id" in capsys.readouterr().err
    assert main(["users", "import", "--tenant-id", "nope", str(big)]) == 2
    assert "No enterprise has tenant id nope" in capsys.readouterr().err
