"""What an admin typed shows as text on every card: Adaptive Card markdown never turns a name,
an e-mail, a search or a group name into a link, emphasis or a list."""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt

from cards.actions import Verb
from cards.common import plain
from tests.botkit import BotHarness, buttons

HOSTILE_NAME = "[Click me](https://evil.example/phish) **loud** _soft_ <b>x</b> &amp;"
RENDERER = MarkdownIt("commonmark")


def markdown_texts(card: dict[str, Any]) -> list[str]:
    """Every text on a card that a Teams client renders as markdown."""
    found: list[str] = []
    stack: list[Any] = [card]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") in ("TextBlock", "TextRun") and isinstance(node.get("text"), str):
                found.append(node["text"])
            if node.get("type") == "FactSet":
                for fact in node.get("facts", []):
                    found.extend((fact["title"], fact["value"]))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def assert_shown_as_text(card: dict[str, Any]) -> None:
    """No text of the card renders the hostile name as markup."""
    for text in markdown_texts(card):
        html = RENDERER.render(text)
        assert "<a " not in html, text
        assert "<strong>loud" not in html and "<em>soft" not in html, text
        assert "<b>x" not in html, text


def test_plain_text_renders_as_itself() -> None:
    for text in [HOSTILE_NAME, "1. first", "- item", "# heading", "`code`", "a\\b", "Ada (Sales)"]:
        html = RENDERER.render(plain(text)).strip()
        assert html.startswith("<p>") and "<a " not in html and "<li>" not in html, html
        assert "<h1>" not in html and "<code>" not in html and "<strong>" not in html, html
    assert plain("+44 20 7946 0000") == "+44 20 7946 0000"
    assert plain("ada.lovelace@contoso.example") == "ada.lovelace@contoso.example"


async def test_an_admin_typed_name_never_becomes_markup(harness: BotHarness) -> None:
    created = await harness.act(
        Verb.USER_CREATE_SUBMIT,
        {
            "display_name": HOSTILE_NAME,
            "email": "ada_love_lace@contoso.example",
            "licence": "essentials",
            "number_mode": "auto",
            "extension_mode": "auto",
        },
    )
    assert "was created" in created["body"][0]["text"], created["body"][0]
    user_id = buttons(created)["Edit user"]["user_id"]
    cards = [
        created,
        await harness.act(Verb.USER_OPEN, {"user_id": user_id}),
        await harness.act(Verb.DIRECTORY_OPEN, {}),
        await harness.act(Verb.USER_FIND, {"query": "Click"}),
        await harness.act(Verb.USER_FIND, {"query": "[nobody](https://evil.example)"}),
        await harness.act(Verb.NUMBERS_OPEN, {"user_id": user_id}),
        await harness.act(Verb.CALLER_ID_OPEN, {"user_id": user_id}),
        await harness.act(Verb.TELEPHONY_OPEN, {"user_id": user_id}),
        await harness.act(
            Verb.HUNT_GROUP_CREATE, {"user_id": user_id, "new_group": "[Sales](https://x.example)"}
        ),
        await harness.act(Verb.DIRECTORY_OPEN, {"query": "**loud**"}),
    ]
    for card in cards:
        assert_shown_as_text(card)
    # and the name is still there, readable, once rendered
    rendered = [RENDERER.render(text) for text in markdown_texts(cards[1])]
    assert any("[Click me](https://evil.example/phish)" in html for html in rendered)
