"""`switchboard graph check`: against the sandbox with every permission Switchboard needs, and
with each one missing in turn; an unknown policy name, a tenant without consent, and the
command line's own output and exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import SandboxServer
from services.cli import main
from services.graph.preflight import MAIL_NEED, NEEDS, preflight
from tests.provisioning_kit import (
    BASIC_SKU,
    CLIENT_ID,
    CLIENT_SECRET,
    ESSENTIALS_SKU,
    POLICY,
    PROVIDER_TENANT,
    SENDER,
    cloud_fixture,  # noqa: F401
    graph_service,
    graph_settings,
    sandbox_server_fixture,  # noqa: F401
    seed_tenant,
)

LEAST_PRIVILEGED = [need.permission for need in NEEDS]


async def _report(cloud: SandboxServer, tid: str, **changes: object) -> dict[str, tuple[bool, str]]:
    settings = graph_settings(cloud, **changes)
    service = graph_service(settings)
    try:
        checks = await preflight(service, settings, tid)
    finally:
        await service.close()
    return {c.name: (c.ok, c.line()) for c in checks}


async def test_a_tenant_with_exactly_the_least_privileged_permissions_passes(
    cloud: SandboxServer,
) -> None:
    tid = seed_tenant(cloud, 61)
    cloud.state.grant_roles(tid, CLIENT_ID, LEAST_PRIVILEGED)

    report = await _report(cloud, tid)

    assert all(ok for ok, _ in report.values()), report
    assert report["verified domains"][1] == "ok    verified domains: enterprise61.example"
    assert report["Essentials licence MCOEV"][1].endswith("500 of 500 free.")
    assert f"voice routing policy “{POLICY}”" in report
    assert "permission Mail.Send" not in report  # mail goes from the provider's tenant


@pytest.mark.parametrize("missing", LEAST_PRIVILEGED)
async def test_each_missing_permission_is_reported_with_its_fix(
    cloud: SandboxServer, missing: str
) -> None:
    tid = seed_tenant(cloud, 62)
    cloud.state.grant_roles(tid, CLIENT_ID, [p for p in LEAST_PRIVILEGED if p != missing])

    report = await _report(cloud, tid)

    ok, line = report[f"permission {missing}"]
    assert not ok
    assert line.startswith(f"FAIL  permission {missing}: not granted; needed to ")
    assert f"add the Microsoft Graph application permission {missing}" in line
    failed = {name for name, (ok, _) in report.items() if not ok}
    # The calls that need it fail too, and nothing else does.
    depends = {
        "Domain.Read.All": {"verified domains"},
        "Organization.Read.All": {"Teams Phone licences"},
        "TeamsPolicyUserAssign.ReadWrite.All": {f"voice routing policy “{POLICY}”"},
        "TeamsTelephoneNumber.ReadWrite.All": {"telephone number API"},
    }
    assert failed == {f"permission {missing}"} | depends.get(missing, set())


async def test_mail_send_belongs_to_the_mail_tenant_only(cloud: SandboxServer) -> None:
    tid = seed_tenant(cloud, 63)
    cloud.state.grant_roles(tid, CLIENT_ID, [*LEAST_PRIVILEGED, "Mail.Send"])
    customer = await _report(cloud, tid)
    ok, line = customer["permission Mail.Send"]
    assert not ok and "remove Mail.Send" in line and "send as anyone" in line

    cloud.state.grant_roles(PROVIDER_TENANT, CLIENT_ID, LEAST_PRIVILEGED)
    provider = await _report(cloud, PROVIDER_TENANT)
    assert provider[f"permission {MAIL_NEED.permission}"][0] is False  # the sender needs it


async def test_an_unknown_policy_and_a_missing_consent_say_what_to_do(
    cloud: SandboxServer,
) -> None:
    tid = seed_tenant(cloud, 64)
    report = await _report(cloud, tid, voice_routing_policy="Nowhere")
    ok, line = report["voice routing policy “Nowhere”"]
    assert not ok and "Voice > Voice routing policies" in line

    cloud.state.require_tenant(tid).consented_apps.clear()
    report = await _report(cloud, tid)
    assert list(report) == ["sign-in"]
    ok, line = report["sign-in"]
    assert not ok and f"/{tid}/adminconsent?client_id={CLIENT_ID}" in line


def test_the_command_prints_a_line_per_check_and_fails_when_one_fails(
    cloud: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    tid = seed_tenant(cloud, 65)
    cloud.state.grant_roles(tid, CLIENT_ID, LEAST_PRIVILEGED)
    for name, value in {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "GRAPH_BASE_URL": cloud.graph_url,
        "GRAPH_AUTHORITY_HOST": cloud.authority_host,
        "GRAPH_AUTHORITY_CA_BUNDLE": str(cloud.ca_path),
        "GRAPH_CLIENT_ID": CLIENT_ID,
        "GRAPH_CLIENT_SECRET": CLIENT_SECRET,
        "LICENCE_SKU_ESSENTIALS": ESSENTIALS_SKU,
        "LICENCE_SKU_BASIC": BASIC_SKU,
        "VOICE_ROUTING_POLICY": POLICY,
        "MAIL_SENDER": SENDER,
        "MAIL_SENDER_TENANT_ID": PROVIDER_TENANT,
    }.items():
        monkeypatch.setenv(name, value)

    assert main(["graph", "check", "--tenant-id", tid]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + len(NEEDS) + 5 and all(line.startswith("ok    ") for line in out)

    cloud.state.grant_roles(tid, CLIENT_ID, [p for p in LEAST_PRIVILEGED if p != "Domain.Read.All"])
    assert main(["graph", "check", "--tenant-id", tid]) == 2
    captured = capsys.readouterr()
    assert sum(line.startswith("FAIL") for line in captured.out.splitlines()) == 2
    assert captured.err.strip() == (
        f"switchboard: error: 2 of {len(out)} checks failed; fix them and run the check again."
    )
    assert CLIENT_SECRET not in captured.out + captured.err


def test_an_operator_names_an_enterprises_voice_routing_policy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("SWITCHBOARD_SECRET_KEY_FILE", str(tmp_path / "secret.key"))
    tid = "66666666-2222-4333-8444-555555555555"
    create = ["enterprise", "create", "--name", "Contoso", "--tenant-id", tid]
    assert main([*create, "--main-number", "020 7946 1000", "--extensions", "1000-1999"]) == 0
    capsys.readouterr()

    assert main(["enterprise", "voice-routing", "--tenant-id", tid, "--name", "PBX East"]) == 0
    assert capsys.readouterr().out.strip() == (
        "Voice routing policy: “PBX East” (its id is looked up in the tenant at each sync)."
    )
    assert main(["enterprise", "voice-routing", "--tenant-id", tid, "--default"]) == 0
    assert "provider's default" in capsys.readouterr().out
    assert main(["enterprise", "voice-routing", "--tenant-id", tid, "--name", "x" * 300]) == 2
    assert "at most 256 characters" in capsys.readouterr().err
