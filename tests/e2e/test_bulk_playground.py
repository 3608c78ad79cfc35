"""Bulk import in a real Microsoft client (the Agents Playground in Chromium): export explains
the columns, type import, paste a CSV into the card's box, read the preview (the counts and the
rejected row with its line and reason), apply, and follow the import to its result card. (The
Playground shows no file consent cards, so the files themselves are tested over the fake Bot
Connector, tests/test_bot_bulk.py.)

Screenshots go to test-artifacts/e2e/ (bulk-NN-step.png, and bulk-NN-step-card.png).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.playground import Playground, fact, press

pytestmark = pytest.mark.e2e

# The import runs in the background; its result card comes on its own.
RESULT_TIMEOUT_MS = 60_000
PASTED = "\n".join(
    [
        "Name,E-mail,Licence,Number,Extension",
        "Bulk One,bulk.one@contoso.example,Essentials,,",
        "Bulk Two,bulk.two@contoso.example,Basic,,",
        "Bad Row,bad.row@contoso.example,Basic,+44 20 7946 0001,",
    ]
)


def test_admin_pastes_a_csv_previews_and_applies_it_in_the_playground(
    playground: Playground,
) -> None:
    playground.card_titled("Welcome to Switchboard, Alex Admin")

    # "export": the file goes through Teams' consent; the card explains every column.
    exported = playground.send("export", expect_title="Export the directory")
    expect(fact(exported, "E-mail")).to_contain_text("which user the row is")
    expect(fact(exported, "Action")).to_contain_text("remove")
    playground.screenshot("bulk-00-export", exported)

    # "import" opens the card with the paste box.
    card = playground.send("import", expect_title="Import users")
    box = card.get_by_label("Or paste the CSV here")
    expect(box).to_be_visible()
    box.fill(PASTED)
    playground.screenshot("bulk-01-import-pasted", card)

    # Preview: what would change, and the rejected row with its line and reason.
    press(card, "Preview", expect_title="Preview of the import")
    expect(fact(card, "Create")).to_have_text("2")
    expect(fact(card, "Rejected")).to_have_text("1")
    expect(card).to_contain_text("Line 4 (bad.row@contoso.example)")
    expect(card).to_contain_text("Line 2, create bulk.one@contoso.example")
    playground.screenshot("bulk-02-preview", card)

    # Apply: the import runs in the background; the result card comes on its own.
    press(card, "Apply 2 changes", expect_title="Import started")
    playground.screenshot("bulk-03-started", card)
    progress = playground.card_titled("Import finished", timeout_ms=RESULT_TIMEOUT_MS)
    expect(fact(progress, "Still to apply")).to_have_text("0")  # updated in place
    result = playground.card_titled("Import result", timeout_ms=RESULT_TIMEOUT_MS)
    expect(result).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    expect(result).to_contain_text("2 rows applied")
    expect(fact(result, "Applied")).to_have_text("2")
    expect(fact(result, "Failed")).to_have_text("0")
    expect(fact(result, "Rejected in the preview")).to_have_text("1")
    playground.screenshot("bulk-04-result", result)

    # The new users are in the directory.
    directory = playground.send("directory", expect_title="Directory")
    expect(directory).to_contain_text("Bulk One")
    expect(directory).to_contain_text("Bulk Two")
    playground.screenshot("bulk-05-directory", directory)
