"""Users without a calling licence over real HTTP: select several and enable them together;
refusals name each user with the reason, keep the selection and enable nobody."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cards.actions import Verb
from services.domain import LicenceProduct
from services.users import NewUser
from services.views import UserView
from tests.botkit import BotHarness, buttons, card_text, find_input
from tests.conftest import PROVIDER, seed_enterprise

ON_SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
ON_POSTGRES = pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def _people(harness: BotHarness, *names: str, ent: int | None = None) -> list[UserView]:
    created = []
    for name in names:
        email = name.lower().replace(" ", ".") + "@contoso.com"
        created.append(
            await harness.services.users.create(PROVIDER, ent or harness.ent, NewUser(name, email))
        )
    return created


async def _licences(harness: BotHarness, ent: int | None = None) -> dict[str, Any]:
    page = await harness.services.directory.page(ent or harness.ent, page_size=100)
    return {user.display_name: user.licence for user in page.items}


def _choices(card: dict[str, Any]) -> dict[str, str]:
    return {c["value"]: c["title"] for c in find_input(card, "users")["choices"]}


async def _enable(harness: BotHarness, ids: list[int] | str, licence: str) -> dict[str, Any]:
    """Press "Enable selected" with the multi-select's value and the chosen product."""
    card = await harness.act(Verb.UNLICENSED_OPEN)
    enable = buttons(card)["Enable selected"]
    value = ids if isinstance(ids, str) else ",".join(str(i) for i in ids)
    answer = await harness.act(
        Verb.UNLICENSED_ENABLE, {**enable, "users": value, "licence": licence}
    )
    confirm = next((t for t in buttons(answer) if re.fullmatch(r"Enable \d+ users", t)), None)
    if confirm is None:
        return answer
    # enabling several users at once is confirmed first, saying what it takes from the pool
    assert "licences from the pool" in card_text(answer)
    return await harness.act(Verb.UNLICENSED_ENABLE, buttons(answer)[confirm])


@ON_SQLITE
async def test_enable_several_at_once_with_essentials(harness: BotHarness) -> None:
    ada, bob, cy = await _people(harness, "Ada King", "Bob Stone", "Cy Young")
    card = await harness.say("unlicensed")
    picker = find_input(card, "users")
    assert picker["isMultiSelect"] is True and picker["style"] == "expanded"
    assert set(_choices(card)) == {str(ada.id), str(bob.id), str(cy.id)}
    assert "Ada King · ada.king@contoso.com" in _choices(card).values()
    assert "Essentials: direct number and extension (50 free)" in card_text(card)
    result = await _enable(harness, [ada.id, cy.id], "essentials")
    text = card_text(result)
    assert "2 users enabled with Essentials" in text
    assert "Ada King" in text and "Cy Young" in text and "Bob Stone" not in text
    assert "+44 20 7946 0000" in text and "+44 20 7946 0001" in text
    assert "1000" in text and "1001" in text
    assert "Sync Teams Users" in text
    assert await _licences(harness) == {
        "Ada King": LicenceProduct.ESSENTIALS,
        "Bob Stone": None,
        "Cy Young": LicenceProduct.ESSENTIALS,
    }
    left = await harness.act(Verb.UNLICENSED_OPEN)
    assert set(_choices(left)) == {str(bob.id)}
    assert "(48 free)" in card_text(left)


@ON_SQLITE
async def test_enable_with_basic_gives_extensions_only(harness: BotHarness) -> None:
    ada, bob = await _people(harness, "Ada King", "Bob Stone")
    result = await _enable(harness, [ada.id, bob.id], "basic")
    assert "2 users enabled with Basic" in card_text(result)
    enabled = await harness.services.directory.page(harness.ent)
    assert [(u.number, u.extension) for u in enabled.items] == [(None, 1000), (None, 1001)]
    everyone = await harness.act(Verb.UNLICENSED_OPEN)
    assert "Everyone in" in card_text(everyone) and "has a calling licence" in card_text(everyone)


@ON_SQLITE
async def test_pool_too_small_refuses_everyone_and_keeps_the_selection(
    harness: BotHarness,
) -> None:
    await harness.services.licences.set_pool(PROVIDER, harness.ent, LicenceProduct.ESSENTIALS, 2)
    people = await _people(harness, "Ada King", "Bob Stone", "Cy Young")
    ids = [p.id for p in people]
    card = await _enable(harness, ids, "essentials")
    text = card_text(card)
    assert "Nobody was enabled" in text
    assert "Not enough subscriptions in the Essentials pool" in text
    assert "**Ada King**, **Bob Stone**, **Cy Young**: Not enough subscriptions" in text
    assert find_input(card, "users")["value"] == ",".join(str(i) for i in ids)
    assert find_input(card, "licence")["value"] == "essentials"
    assert set((await _licences(harness)).values()) == {None}
    # Basic still has room: the same selection goes through with it
    asked = await harness.act(
        Verb.UNLICENSED_ENABLE,
        {
            **buttons(card)["Enable selected"],
            "users": find_input(card, "users")["value"],
            "licence": "basic",
        },
    )
    assert "Take 3 Basic licences from the pool" in card_text(asked)
    done = await harness.act(Verb.UNLICENSED_ENABLE, buttons(asked)["Enable 3 users"])
    assert "3 users enabled with Basic" in card_text(done)


@ON_SQLITE
async def test_already_licensed_user_in_the_selection(harness: BotHarness) -> None:
    ada, bob = await _people(harness, "Ada King", "Bob Stone")
    licensed = await harness.services.users.create(
        PROVIDER,
        harness.ent,
        NewUser("Lee Licensed", "lee@contoso.com", licence=LicenceProduct.BASIC),
    )
    card = await _enable(harness, [ada.id, licensed.id, bob.id], "essentials")
    text = card_text(card)
    assert "**Lee Licensed**: already has a Basic licence" in text
    assert "No user was enabled: 1 of 3 cannot be." in text
    # the selection is kept for the users still on the list
    assert find_input(card, "users")["value"] == f"{ada.id},{bob.id}"
    assert await _licences(harness) == {
        "Ada King": None,
        "Bob Stone": None,
        "Lee Licensed": LicenceProduct.BASIC,
    }


@ON_SQLITE
@pytest.mark.parametrize("value", ["", " , ", None])
async def test_empty_selection_is_refused_next_to_the_list(
    harness: BotHarness, value: str | None
) -> None:
    await _people(harness, "Ada King")
    card = await harness.act(Verb.UNLICENSED_OPEN)
    data = {**buttons(card)["Enable selected"], "licence": "basic"}
    if value is not None:
        data["users"] = value
    refused = await harness.act(Verb.UNLICENSED_ENABLE, data)
    assert "Select at least one user to enable." in card_text(refused)
    assert find_input(refused, "licence")["value"] == "basic"
    assert set((await _licences(harness)).values()) == {None}


@ON_SQLITE
async def test_unreadable_selection_and_product(harness: BotHarness) -> None:
    [ada] = await _people(harness, "Ada King")
    odd = await _enable(harness, f"{ada.id},DROP TABLE users", "essentials")
    assert "could not read that selection" in card_text(odd)
    huge = await _enable(harness, f"{ada.id},{10**40}", "essentials")
    assert "could not read that selection" in card_text(huge)
    product = await _enable(harness, [ada.id], "platinum")
    assert "Choose Essentials or Basic." in card_text(product)
    assert find_input(product, "users")["value"] == str(ada.id)
    assert await _licences(harness) == {"Ada King": None}


@ON_SQLITE
async def test_users_of_another_enterprise_are_refused_never_enabled(
    harness: BotHarness,
) -> None:
    other = await seed_enterprise(
        harness.services, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    [victim] = await _people(harness, "Vic Other", ent=other)
    [ada] = await _people(harness, "Ada King")
    card = await harness.act(Verb.UNLICENSED_OPEN, {"ent": other})
    assert set(_choices(card)) == {str(ada.id)}  # the crafted ent is ignored
    crafted = await harness.act(
        Verb.UNLICENSED_ENABLE,
        {"ent": other, "users": f"{ada.id},{victim.id}", "licence": "essentials"},
    )
    text = card_text(crafted)
    assert f"Unknown user (id {victim.id}): not a user of this enterprise" in text.replace("**", "")
    assert "Vic Other" not in text
    assert await _licences(harness, other) == {"Vic Other": None}
    assert await _licences(harness) == {"Ada King": None}
    only_theirs = await harness.act(
        Verb.UNLICENSED_ENABLE, {"users": str(victim.id), "licence": "basic"}
    )
    assert "Vic Other" not in card_text(only_theirs)
    assert await _licences(harness, other) == {"Vic Other": None}


@ON_POSTGRES
async def test_enable_main_flow_on_postgres(harness: BotHarness) -> None:
    await harness.services.licences.set_pool(PROVIDER, harness.ent, LicenceProduct.ESSENTIALS, 1)
    ada, bob = await _people(harness, "Ada King", "Bob Stone")
    refused = await _enable(harness, [ada.id, bob.id], "essentials")
    assert "Not enough subscriptions" in card_text(refused)
    assert find_input(refused, "users")["value"] == f"{ada.id},{bob.id}"
    assert set((await _licences(harness)).values()) == {None}
    asked = await harness.act(
        Verb.UNLICENSED_ENABLE,
        {**buttons(refused)["Enable selected"], "users": f"{ada.id},{bob.id}", "licence": "basic"},
    )
    assert "Take 2 Basic licences from the pool" in card_text(asked)
    done = await harness.act(Verb.UNLICENSED_ENABLE, buttons(asked)["Enable 2 users"])
    assert "2 users enabled with Basic" in card_text(done)
    assert "1000" in card_text(done) and "1001" in card_text(done)
    assert set((await _licences(harness)).values()) == {LicenceProduct.BASIC}
