"""An admin's first session with Switchboard in a real Microsoft client (the Agents Playground
in Chromium): help, create a user with a chosen number, caller ID by last digits, the
directory, and a sync that ends with the proactive completion card.

Every step leaves a screenshot in test-artifacts/e2e/ (NN-step.png, and NN-step-card.png for
the card alone).
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import Locator, expect

from bot.demo import (
    ESSENTIALS_LICENCES,
    EXISTING_USERS,
    EXTENSIONS,
    MAIN_NUMBER,
    DemoStack,
    graph_preflight,
)
from services.domain import LicenceProduct
from services.phone import pretty
from tests.e2e.playground import Playground, fact, press

pytestmark = pytest.mark.e2e

# The proactive card comes when the sync engine has finished with Microsoft: give it time.
SYNC_TIMEOUT_MS = 90_000


def sandbox_user(stack: DemoStack, upn: str) -> dict[str, Any] | None:
    """What the Graph sandbox (Microsoft, for the demo) holds for a user principal name."""
    url = f"{stack.settings.sandbox_admin_url}/state?tenant={stack.tenant.tenant_id}"
    with urllib.request.urlopen(url, timeout=10) as response:
        state = json.load(response)
    users = [user for tenant in state["tenants"] for user in tenant["users"]]
    return next((user for user in users if user["userPrincipalName"] == upn), None)


def test_admin_sets_up_a_phone_user_and_syncs_in_the_playground(
    playground: Playground, demo_stack: DemoStack
) -> None:
    # Installing the app greets the admin by name, in their role.
    welcome = playground.card_titled("Welcome to Switchboard, Alex Admin")
    expect(welcome).to_contain_text("Alex Admin (Global Admin) for Contoso Ltd")
    playground.screenshot("01-welcome", welcome)

    # "help" shows the home card: the enterprise at a glance and every task.
    home = playground.send("help", expect_title="Switchboard")
    in_use = sum(user.licence is LicenceProduct.ESSENTIALS for user in EXISTING_USERS)
    expect(fact(home, "Main number")).to_have_text(pretty(MAIN_NUMBER))
    expect(fact(home, "Essentials licences")).to_have_text(
        f"{ESSENTIALS_LICENCES - in_use} free of {ESSENTIALS_LICENCES}"
    )
    for task in ("Create user", "Find user", "Directory", "Unlicensed users", "Sync status"):
        expect(home.get_by_role("button", name=task, exact=True)).to_be_visible()
    playground.screenshot("02-help", home)

    # Create a user with the number ending in 1111, chosen by its last digits (the
    # Playground has no type-ahead, so the free-number search box stays empty).
    form = press(home, "Create user", expect_title="Create user")
    form.get_by_label("Display name").fill("Ada Lovelace")
    form.get_by_label("Primary e-mail (Entra)").fill("ada.lovelace@contoso.example")
    form.get_by_role("radio", name="Essentials: direct number and extension").check()
    playground.choose(form, "Direct number", "Choose a number")
    form.get_by_label("…or type the number's last digits").fill("1111")
    playground.screenshot("03-create-user-form", form)
    created = press(form, "Create user", expect_title="Ada Lovelace was created")
    expect(fact(created, "Number")).to_have_text("+44 20 7123 1111")
    expect(fact(created, "Extension")).to_have_text(re.compile(r"^\d+$"))
    extension = fact(created, "Extension").inner_text().strip()
    assert EXTENSIONS[0] <= int(extension) <= EXTENSIONS[1]
    expect(fact(created, "Caller ID")).to_have_text("+44 20 7123 1111 (their own number)")
    expect(fact(created, "Teams sync")).to_contain_text("Not synced")
    playground.screenshot("04-user-created", created)

    # Caller ID: present the reception line, picked by its last digits.
    caller_id = press(created, "Caller ID", expect_title="Caller ID: Ada Lovelace")
    caller_id.get_by_role("radio", name="Another company number", exact=False).check()
    caller_id.get_by_label("Another company number: its last digits").fill("2222")
    playground.screenshot("05-caller-id-form", caller_id)
    press(caller_id, "Save caller ID", expect_title="Caller ID: Ada Lovelace")
    expect(caller_id).to_contain_text("Caller ID saved: calls now present +44 20 7123 2222")
    expect(fact(caller_id, "Presents")).to_have_text("+44 20 7123 2222 (another company number)")
    expect(fact(caller_id, "Own number")).to_have_text("+44 20 7123 1111")
    playground.screenshot("06-caller-id-saved", caller_id)

    # The same digits again: the number is taken, the form comes back as typed, the
    # reason next to the digits.
    again = playground.send("create user", expect_title="Create user")
    again.get_by_label("Display name").fill("Grace Hopper")
    again.get_by_label("Primary e-mail (Entra)").fill("grace.hopper@contoso.example")
    playground.choose(again, "Direct number", "Choose a number")
    again.get_by_label("…or type the number's last digits").fill("1111")
    again.get_by_role("button", name="Create user", exact=True).click()
    expect(again).to_contain_text(
        "No free number ends in 1111: +44 20 7123 1111 is Ada Lovelace's number."
    )
    expect(again).to_contain_text("Nothing was saved")
    expect(again.get_by_label("Display name")).to_have_value("Grace Hopper")
    expect(again.get_by_label("…or type the number's last digits")).to_have_value("1111")
    playground.screenshot("07-number-taken", again)

    # The directory lists her with her number and extension; its search finds her alone.
    services = playground.send("directory", expect_title="Directory")
    ada_row = services.get_by_role("row").filter(has_text="Ada Lovelace")
    expect(ada_row).to_contain_text("+44 20 7123 1111")
    expect(ada_row).to_contain_text(extension)
    playground.screenshot("08-directory", services)
    services.get_by_role("textbox", name="Search", exact=True).fill("lovelace")
    services.get_by_role("button", name="Search and sort", exact=True).click()
    expect(services).to_contain_text("1 user")
    # The e-mail may wrap after its "@" and dots (zero-width spaces), never inside a word.
    ada_email = re.compile("ada\\.\u200b?lovelace@\u200b?contoso\\.\u200b?example")
    expect(services.get_by_role("row").filter(has_text=ada_email)).to_be_visible()
    expect(services).not_to_contain_text("Erin Enterprise")
    playground.screenshot("09-directory-search", services)

    # The Global Admin starts the first sync; the card changes to show it is under way.
    sync = playground.send("sync", expect_title="Sync Teams Users")
    expect(sync).to_contain_text("Changes sync manually")
    playground.screenshot("10-sync-status", sync)
    sync.get_by_role("button", name="Sync Teams Users", exact=True).click()
    expect(sync).to_contain_text("Requested by")
    expect(sync).to_contain_text("Alex Admin (you)")
    playground.screenshot("11-sync-started", sync)

    # When the engine is done with Microsoft, the bot tells the admin, unprompted.
    finished = playground.card_titled("Sync Teams Users finished", timeout_ms=SYNC_TIMEOUT_MS)
    expect(finished).to_contain_text("Every change reached Microsoft Teams.")
    expect(fact(finished, "Outcome")).to_contain_text("Succeeded")
    expect(fact(finished, "Failed")).to_have_text("0")
    playground.screenshot("12-sync-finished", finished)

    # The card she pressed no longer says the sync is under way: the bot updated it in place.
    expect(sync).to_contain_text("Last sync", timeout=SYNC_TIMEOUT_MS)
    expect(sync).not_to_contain_text("Sync in progress")
    expect(fact(sync, "Status")).to_contain_text("Succeeded")
    playground.screenshot("14-pressed-card-updated", sync)

    # And Microsoft (the Graph sandbox) really holds Ada, with her number.
    ada = sandbox_user(demo_stack, "ada.lovelace@contoso.example")
    assert ada is not None, "the sync did not create Ada in Entra"
    assert ada["teams"]["isEnterpriseVoiceEnabled"] is True
    assert [n["telephoneNumber"] for n in ada["teams"]["telephoneNumbers"]] == ["+442071231111"]

    status = press(finished, "Sync status", expect_title="Sync Teams Users")
    expect(fact(status, "Status")).to_contain_text("Succeeded")
    expect(status).to_contain_text("Every user is provisioned.")
    playground.screenshot("13-sync-status-after", status)


NARROW = {"width": 520, "height": 1600}
WIDE = {"width": 1600, "height": 1600}


def overflowing_cells(card: Locator) -> list[str]:
    """The texts of the card's table cells whose content is wider than the cell (a word that
    would be cut or broken at this width)."""
    return card.evaluate(
        "card => [...card.querySelectorAll('[role=cell], [role=columnheader], .ac-textBlock')]"
        ".filter(el => el.scrollWidth > el.clientWidth + 1).map(el => el.innerText)"
    )


def words_broken_across_lines(card: Locator) -> list[str]:
    """The words of the card's texts that the renderer split over two lines (an e-mail broken
    inside a name, a number cut in two). Words end at spaces and at the zero-width spaces a
    card may offer as a break (after an e-mail's "@" or a dot)."""
    return card.evaluate(
        r"""card => {
            const broken = [];
            for (const cell of card.querySelectorAll('.ac-textBlock')) {
                const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
                for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                    const text = node.textContent;
                    for (const match of text.matchAll(/[^\s\u200b]+/g)) {
                        const range = document.createRange();
                        range.setStart(node, match.index);
                        range.setEnd(node, match.index + match[0].length);
                        const tops = new Set(
                            [...range.getClientRects()].filter(r => r.width > 0)
                                .map(r => Math.round(r.top)));
                        if (tops.size > 1) broken.push(match[0]);
                    }
                }
            }
            return broken;
        }"""
    )


def test_find_remove_and_consent_in_one_click_each_in_the_playground(
    playground: Playground, demo_stack: DemoStack
) -> None:
    # "find priya": the one match opens at once, no second picker to fill in.
    user = playground.send("find priya", expect_title="Priya Shah")
    expect(fact(user, "Teams sync")).to_be_visible()
    playground.screenshot("20-find-opens-the-user", user)

    # Removing her asks first, saying what will happen to her number and licence.
    press(user, "Remove user", expect_title="Remove Priya Shah?")
    expect(user).to_contain_text("Return their Essentials licence to the pool")
    expect(user).to_contain_text("goes into quarantine until")
    expect(user).to_contain_text("the Microsoft 365 account of priya.shah@contoso.example stays")
    playground.screenshot("21-remove-asks-first", user)
    press(user, "Remove the user", expect_title="Priya Shah was removed")
    expect(user).to_contain_text("Their Essentials licence is back in the pool.")
    playground.screenshot("22-user-removed", user)
    gone = playground.send("find priya", expect_title="Find user")
    expect(gone).to_contain_text("No user matches “priya”")

    # The Global Admin allows management by the service provider from the sync card.
    sync = playground.send("sync", expect_title="Sync Teams Users")
    expect(sync).to_contain_text("Management by the service provider: not allowed.")
    told = playground.cards.filter(
        has=playground.page.get_by_role("heading", name="Sync Teams Users finished", exact=True)
    )
    told_before = told.count()
    press(sync, "Allow management by service provider", expect_title="Sync Teams Users")
    expect(sync).to_contain_text("Management by the service provider allowed")
    expect(sync.get_by_role("button", name="Withdraw consent", exact=True)).to_be_visible()
    playground.screenshot("23-consent-given", sync)

    # With consent and the first sync done (the first journey's), Priya's removal syncs by
    # itself, and Alex, who removed her, is told when it has finished, with the same card.
    expect(told).to_have_count(told_before + 1, timeout=SYNC_TIMEOUT_MS)
    automatic = told.last
    expect(fact(automatic, "Started")).to_contain_text("automatic sync", timeout=SYNC_TIMEOUT_MS)
    expect(automatic).to_contain_text("Every change reached Microsoft Teams.")
    playground.screenshot("25-automatic-sync-told", automatic)
    press(sync, "Withdraw consent", expect_title="Sync Teams Users")
    expect(sync).to_contain_text("Consent withdrawn")

    # The tables read at the narrow and the wide chat width: no cell cut or broken.
    for name, viewport in (("narrow", NARROW), ("wide", WIDE)):
        playground.page.set_viewport_size(viewport)  # type: ignore[arg-type]
        services = playground.send("directory", expect_title="Directory")
        expect(services).to_contain_text("Essentials")
        playground.screenshot(f"24-directory-{name}", services)
        assert overflowing_cells(services) == [], name
        assert words_broken_across_lines(services) == [], name


def test_the_demo_runs_the_graph_preflight_against_the_sandbox(demo_stack: DemoStack) -> None:
    """What `make demo` prints under its welcome: `switchboard graph check` for the demo
    tenant, one line per check, signed in and the Teams Phone licence found."""
    report = graph_preflight(demo_stack)
    lines = report.splitlines()
    assert lines[0].strip().startswith("ok    sign-in:"), report
    assert any(line.strip().startswith("ok") and "licence" in line.lower() for line in lines)
    assert len(lines) >= 5
