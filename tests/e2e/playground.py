"""The Microsoft 365 Agents Playground's chat, as an admin uses it, for Playwright.

What the selectors rely on (found by exploring the Playground 0.2.x page):
- the compose box is a Lexical editor, `[data-lexical-editor="true"]`; Enter sends;
- every Adaptive Card is rendered by the adaptivecards library into `.ac-adaptiveCard`,
  one per message, in chat order; an Action.Execute answer replaces the card in place;
- a card's title (style "heading") has role heading; inputs are labelled by `<label for>`;
  compact choice sets are Fluent comboboxes whose options are role option (in a popup
  outside the card); expanded ones are radio buttons.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

CARD = ".ac-adaptiveCard"
COMPOSE_BOX = '[data-lexical-editor="true"]'
# A turn goes through the Playground, the bot and the database: seconds, not milliseconds.
TURN_TIMEOUT_MS = 20_000


class Playground:
    """One admin's chat with Switchboard in the Playground."""

    def __init__(self, page: Page, artifacts: Path) -> None:
        self.page = page
        self.artifacts = artifacts
        self.cards = page.locator(CARD)

    def open(self, url: str) -> None:
        """Load the Playground and wait until the chat can take a message."""
        self.page.goto(url)
        expect(self.page.locator(COMPOSE_BOX)).to_be_visible(timeout=TURN_TIMEOUT_MS)

    def card_titled(self, title: str, *, timeout_ms: int = TURN_TIMEOUT_MS) -> Locator:
        """The latest card whose title is `title`, once it is on the page.

        The card is returned by its place in the chat, so the locator keeps pointing at it
        after one of its buttons changes it into another card.
        """
        titled = self.cards.filter(has=self.page.get_by_role("heading", name=title, exact=True))
        expect(titled.last).to_be_visible(timeout=timeout_ms)
        titles: list[str] = self.cards.evaluate_all(
            "cards => cards.map(card => "
            "(card.querySelector('[role=heading]')?.innerText ?? '').trim())"
        )
        return self.cards.nth(max(i for i, text in enumerate(titles) if text == title))

    def send(self, text: str, *, expect_title: str) -> Locator:
        """Type a message; return the card the bot answers with (a new message)."""
        before = self.cards.count()
        compose = self.page.locator(COMPOSE_BOX)
        compose.click()
        compose.fill(text)
        compose.press("Enter")
        expect(self.cards).to_have_count(before + 1, timeout=TURN_TIMEOUT_MS)
        card = self.cards.nth(before)
        expect_title_of(card, expect_title)
        return card

    def choose(self, card: Locator, label: str, option: str) -> None:
        """Pick an option of a compact choice set (a combobox) on `card`."""
        card.get_by_role("combobox", name=label).click()
        self.page.get_by_role("option", name=option, exact=True).click()
        expect(card.get_by_role("combobox", name=label)).to_have_value(option)

    def screenshot(self, name: str, card: Locator | None = None) -> Path:
        """Save the chat as the admin sees it, and the card on its own when given."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        if card is not None:
            card.scroll_into_view_if_needed()
            card.screenshot(path=self.artifacts / f"{name}-card.png", animations="disabled")
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=path, animations="disabled")
        return path


def press(card: Locator, button: str, *, expect_title: str) -> Locator:
    """Press a card's button; the card changes in place into the one titled `expect_title`."""
    card.get_by_role("button", name=button, exact=True).click()
    expect_title_of(card, expect_title)
    return card


def expect_title_of(card: Locator, title: str) -> None:
    """Wait until the card's title reads `title`."""
    expect(card.get_by_role("heading").first).to_have_text(title, timeout=TURN_TIMEOUT_MS)


def fact(card: Locator, name: str) -> Locator:
    """The value next to a fact's title on the card (FactSet rows)."""
    title = card.locator(".ac-fact-title", has_text=re.compile(rf"^{re.escape(name)}$"))
    return title.locator("xpath=following-sibling::*[1]")
