"""sendMail is recorded for the mailbox pages; the admin API seeds, inspects and resets."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from sandbox import SandboxServer
from tests.sandbox.helpers import (
    ADMIN_ID,
    CLIENT_ID,
    OTHER_TENANT,
    SECRET,
    TENANT,
    GraphClient,
    fetch_token,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def message(subject: str, to: str, content: str = "Hello", kind: str = "Text") -> dict[str, object]:
    return {
        "message": {
            "subject": subject,
            "body": {"contentType": kind, "content": content},
            "toRecipients": [{"emailAddress": {"address": to}}],
        },
        "saveToSentItems": False,
    }


async def test_send_mail_is_recorded_newest_first(
    server: SandboxServer, graph: GraphClient
) -> None:
    first = await graph.post(
        f"/users/{ADMIN_ID}/sendMail", message("Welcome", "new.user@contoso.example")
    )
    second = await graph.post(
        "/users/admin@contoso.example/sendMail",
        message("Your <account>", "other@contoso.example", "<p>Hi <b>there</b></p>", "HTML"),
    )

    assert (first.status, second.status) == (202, 202)
    async with graph.session.get(server.admin_url + "/mail.json") as response:
        mails = (await response.json())["value"]
    assert [m["subject"] for m in mails] == ["Your <account>", "Welcome"]
    assert mails[1]["sender"] == "admin@contoso.example"
    assert mails[1]["to"] == ["new.user@contoso.example"]
    assert mails[1]["body"] == "Hello"
    assert mails[0]["contentType"] == "HTML"

    async with graph.session.get(server.admin_url + "/mail") as response:
        page = await response.text()
        assert response.content_type == "text/html"
    assert page.index("Your &lt;account&gt;") < page.index("Welcome")


async def test_send_mail_needs_a_known_sender_and_a_recipient(graph: GraphClient) -> None:
    unknown = await graph.post("/users/ghost@contoso.example/sendMail", message("x", "a@b.example"))
    assert unknown.status == 404
    nobody = await graph.post(
        f"/users/{ADMIN_ID}/sendMail", {"message": {"subject": "x", "toRecipients": []}}
    )
    assert nobody.status == 400


async def test_seed_state_stats_and_reset_over_http(server: SandboxServer) -> None:
    tenant = {
        "id": OTHER_TENANT,
        "displayName": "Fabrikam",
        "consentedApps": [CLIENT_ID],
        "skus": [{"skuId": "sku-basic", "skuPartNumber": "BASIC", "enabled": 2, "consumed": 1}],
        "users": [{"userPrincipalName": "gil@fabrikam.example", "displayName": "Gil"}],
        "globalAdmins": ["gil@fabrikam.example"],
    }
    async with aiohttp.ClientSession() as admin:
        async with admin.post(server.admin_url + "/tenants", json=tenant) as response:
            assert response.status == 201

        token = await fetch_token(server, OTHER_TENANT, CLIENT_ID, SECRET)
        async with admin.get(
            server.graph_url + "/subscribedSkus", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            (sku,) = (await response.json())["value"]
            assert (sku["skuPartNumber"], sku["consumedUnits"]) == ("BASIC", 1)

        async with admin.get(server.admin_url + "/state", params={"tenant": OTHER_TENANT}) as r:
            (snapshot,) = (await r.json())["tenants"]
        assert [u["userPrincipalName"] for u in snapshot["users"]] == ["gil@fabrikam.example"]
        assert len(snapshot["roleAssignments"]) == 1

        async with admin.get(server.admin_url + "/stats") as response:
            stats = await response.json()
        assert stats[OTHER_TENANT]["requests"] == {"GET /subscribedSkus": 1}
        assert stats[OTHER_TENANT]["tokensIssued"] == 1

        async with admin.post(server.admin_url + "/reset") as response:
            assert response.status == 204
        async with admin.get(server.admin_url + "/state") as response:
            assert (await response.json())["tenants"] == []
    assert server.state.tenant(TENANT) is None


async def test_python_m_sandbox_prints_urls_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox",
        "--graph-port",
        "0",
        "--token-port",
        "0",
        "--state-dir",
        str(tmp_path),
        "--seed",
        str(REPO_ROOT / "sandbox" / "demo_seed.json"),
        "--quiet",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines = []
    try:
        while len(lines) < 5:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
            assert line, "the sandbox exited early"
            lines.append(line.decode().strip())
        graph_url = lines[0].split()[-1]
        state_url = graph_url.removesuffix("/v1.0") + "/_sandbox/state"
        async with aiohttp.ClientSession() as session, session.get(state_url) as response:
            tenants = (await response.json())["tenants"]
        assert len(tenants) == 2
        assert (tmp_path / "sandbox-ca.pem").is_file()
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=20)
    assert lines[0].startswith("Graph:") and graph_url.endswith("/v1.0")
    assert lines[1].startswith("Entra:") and "https://127.0.0.1:" in lines[1]
    assert code == 0
