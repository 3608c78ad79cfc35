"""The card check: sample cards pass both checks, planted defects are caught."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
from microsoft_teams.cards import (
    ActionSet,
    AdaptiveCard,
    Choice,
    ChoiceSetInput,
    Column,
    ColumnDefinition,
    ColumnSet,
    Container,
    DateInput,
    ExecuteAction,
    Fact,
    FactSet,
    Image,
    ImageSet,
    NumberInput,
    OpenUrlAction,
    QueryData,
    RefreshDefinition,
    RichTextBlock,
    ShowCardAction,
    SubmitAction,
    Table,
    TableCell,
    TableRow,
    TargetElement,
    TeamsCardProperties,
    TextBlock,
    TextInput,
    TextRun,
    TimeInput,
    ToggleInput,
    ToggleVisibilityAction,
)

from tests.cardcheck import (
    CardCheckSetupError,
    CardLike,
    assert_valid_cards,
    card_payload,
    card_problems,
    js_library_events,
    jslib,
    schema_errors,
)
from tests.cardcheck.schema import official_schema, schema_path

PHOTO_URL = "https://example.org/photos/ada.png"


def user_create_form() -> AdaptiveCard:
    """A form with required inputs, Data.Query type-ahead and Action.Execute."""
    return AdaptiveCard(
        version="1.5",
        fallback_text="Create a Teams Phone user",
        msteams=TeamsCardProperties(width="full"),
        body=[
            TextBlock(text="Create a phone user", style="heading", size="Large", wrap=True),
            TextInput(
                id="user",
                label="User principal name",
                placeholder="ada@contoso.com",
                style="Email",
                is_required=True,
                error_message="Enter the user's sign-in name",
            ),
            ChoiceSetInput(
                id="number",
                label="Phone number",
                style="filtered",
                choices_data=QueryData(dataset="numbers.free"),
                is_required=True,
                error_message="Pick a free number",
            ),
            ChoiceSetInput(
                id="licence",
                label="Licence",
                style="filtered",
                choices=[
                    Choice(title="Teams Phone Standard", value="MCOEV"),
                    Choice(title="Teams Phone with Calling Plan", value="MCOEV_CP"),
                ],
                choices_data=QueryData(dataset="licences", associated_inputs="auto"),
            ),
            NumberInput(id="extension", label="Extension", min=100, max=9999),
            DateInput(id="start", label="Start date"),
            TimeInput(id="window", label="Maintenance window"),
            ToggleInput(id="voicemail", title="Enable voicemail", value="true"),
        ],
        actions=[
            ExecuteAction(title="Create", verb="user.create.submit", data={"step": 1}),
            ExecuteAction(title="Cancel", verb="user.create.cancel", associated_inputs="none"),
        ],
    )


def user_summary() -> AdaptiveCard:
    """A read-only summary: ColumnSet, Image, FactSet, ImageSet."""
    return AdaptiveCard(
        version="1.5",
        body=[
            ColumnSet(
                columns=[
                    Column(
                        width="auto",
                        items=[Image(url=PHOTO_URL, style="Person", size="Small", alt_text="Ada")],
                    ),
                    Column(
                        width="stretch",
                        items=[
                            TextBlock(text="Ada Lovelace", weight="Bolder", wrap=True),
                            TextBlock(text="Engineering", is_subtle=True, spacing="None"),
                        ],
                    ),
                ]
            ),
            FactSet(
                facts=[
                    Fact(title="Number", value="+44 20 7946 0000"),
                    Fact(title="Extension", value="4711"),
                    Fact(title="Caller ID", value="Company main line"),
                ]
            ),
            ImageSet(images=[Image(url=PHOTO_URL, alt_text="Ada")], image_size="Small"),
        ],
    )


def sync_status_table() -> AdaptiveCard:
    """A Table of sync results with a header row."""
    header = TableRow(
        style="accent",
        cells=[
            TableCell(items=[TextBlock(text="User", weight="Bolder")]),
            TableCell(items=[TextBlock(text="State", weight="Bolder")]),
        ],
    )
    rows = [
        TableRow(
            cells=[
                TableCell(items=[TextBlock(text=user)]),
                TableCell(items=[TextBlock(text=state, color=colour)]),
            ]
        )
        for user, state, colour in [
            ("ada@contoso.com", "Synced", "Good"),
            ("alan@contoso.com", "Throttled, retrying", "Warning"),
        ]
    ]
    return AdaptiveCard(
        version="1.5",
        body=[
            TextBlock(text="Sync status", style="heading"),
            Table(
                columns=[ColumnDefinition(width=2), ColumnDefinition(width="120px")],
                rows=[header, *rows],
                show_grid_lines=True,
                grid_style="accent",
            ),
        ],
        actions=[ExecuteAction(title="Retry failed", verb="sync.retry")],
    )


def rich_text_with_actions() -> AdaptiveCard:
    """RichTextBlock, a Container with selectAction, ShowCard, ToggleVisibility, Submit, OpenUrl."""
    details = AdaptiveCard(
        body=[TextInput(id="reason", label="Reason", is_multiline=True, max_length=500)],
        actions=[ExecuteAction(title="Release number", verb="number.release", data={"n": "4711"})],
    )
    return AdaptiveCard(
        version="1.5",
        body=[
            RichTextBlock(
                inlines=[
                    TextRun(text="Number "),
                    TextRun(text="+44 20 7946 0000", weight="Bolder", font_type="Monospace"),
                    TextRun(text=" is assigned.", italic=True),
                ]
            ),
            Container(
                id="more",
                is_visible=False,
                style="emphasis",
                items=[TextBlock(text="Assigned on 1 March by the sync engine.", wrap=True)],
                select_action=OpenUrlAction(url="https://admin.teams.microsoft.com/"),
            ),
            ActionSet(
                actions=[
                    ToggleVisibilityAction(
                        title="Details", target_elements=[TargetElement(element_id="more")]
                    ),
                ]
            ),
        ],
        actions=[
            ShowCardAction(title="Release", card=details),
            SubmitAction(title="Refresh", data={"verb": "number.show"}),
            OpenUrlAction(title="Open admin centre", url="https://admin.teams.microsoft.com/"),
        ],
    )


def refreshing_status() -> AdaptiveCard:
    """A Universal Actions card that refreshes itself for the admins who see it."""
    return AdaptiveCard(
        version="1.5",
        refresh=RefreshDefinition(
            action=ExecuteAction(verb="sync.status.refresh", data={"run": 7}),
            user_ids=["29:1a2b3c"],
        ),
        body=[TextBlock(text="Sync run 7: 950 of 1,000 users done", wrap=True)],
    )


SAMPLE_CARDS: dict[str, AdaptiveCard] = {
    "user_create_form": user_create_form(),
    "user_summary": user_summary(),
    "sync_status_table": sync_status_table(),
    "rich_text_with_actions": rich_text_with_actions(),
    "refreshing_status": refreshing_status(),
}


def test_sample_cards_pass_both_checks() -> None:
    assert_valid_cards(SAMPLE_CARDS)


def test_sample_cards_use_what_the_checks_must_understand() -> None:
    form = card_payload(SAMPLE_CARDS["user_create_form"])
    assert form["msteams"] == {"width": "full"}
    assert form["body"][2]["choices.data"] == {"type": "Data.Query", "dataset": "numbers.free"}
    assert form["actions"][0]["type"] == "Action.Execute"
    table = card_payload(SAMPLE_CARDS["sync_status_table"])["body"][1]
    assert table["type"] == "Table"


@dataclass(frozen=True)
class Defect:
    """A card with one planted problem, and what each check is known to say about it."""

    name: str
    card: dict[str, Any]
    schema_finds: str
    library_finds: str | None  # None: the JavaScript library does not report this defect


def _form_with(mutate: Any) -> dict[str, Any]:
    card = copy.deepcopy(card_payload(user_create_form()))
    mutate(card)
    return card


def _card(*body: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"type": "AdaptiveCard", "version": "1.5", "body": list(body), **top}


DEFECTS = [
    Defect(
        "unknown element type",
        _form_with(lambda c: c["body"].append({"type": "Input.Dropdown", "id": "x"})),
        "$.body[8]: type 'Input.Dropdown' is not allowed here",
        'parse UnknownElementType: Unknown element type "Input.Dropdown"',
    ),
    Defect(
        "unknown action type",
        _form_with(lambda c: c["actions"].append({"type": "Action.Exec", "verb": "x"})),
        "$.actions[2]: type 'Action.Exec' is not allowed here",
        'parse UnknownActionType: Unknown action type "Action.Exec"',
    ),
    Defect(
        "input without id",
        _form_with(lambda c: c["body"][1].pop("id")),
        "$.body[1]: 'id' is a required property",
        "validate PropertyCantBeNull: All inputs must have a unique Id. (at Input.Text)",
    ),
    Defect(
        "TextBlock without text",
        _form_with(lambda c: c["body"][0].pop("text")),
        "$.body[0]: 'text' is a required property",
        None,
    ),
    Defect(
        "wrong property type",
        _form_with(lambda c: c["body"][0].update(wrap="yes")),
        "$.body[0].wrap: 'yes' is not of type 'boolean'",
        None,
    ),
    Defect(
        "value outside an enumeration",
        _form_with(lambda c: c["body"][0].update(weight="heavy")),
        "$.body[0].weight: 'heavy' is not one of",
        'parse InvalidPropertyValue: Invalid value "heavy" for property "weight"',
    ),
    Defect(
        "Action.Execute verb of the wrong type",
        _form_with(lambda c: c["actions"][0].update(verb=42)),
        "$.actions[0].verb: 42 is not of type 'string'",
        None,
    ),
    Defect(
        "Action.Execute data of the wrong type",
        _form_with(lambda c: c["actions"][0].update(data=["user"])),
        '$.actions[0].data: ["user"] is not an allowed value here (expected object or string)',
        None,
    ),
    Defect(
        "misspelt property",
        _form_with(lambda c: c["body"][3].update(isMultiselect=True)),
        "$.body[3]: Additional properties are not allowed ('isMultiselect' was unexpected)",
        None,
    ),
    Defect(
        "Data.Query without dataset",
        _form_with(lambda c: c["body"][3]["choices.data"].pop("dataset")),
        "$.body[3][\"choices.data\"]: 'dataset' is a required property",
        None,
    ),
    Defect(
        "choice without value",
        _form_with(lambda c: c["body"][3]["choices"][0].pop("value")),
        "$.body[3].choices[0]: 'value' is a required property",
        "validate PropertyCantBeNull: All choices in an Input.ChoiceSet must have their title "
        "and value properties set.",
    ),
    Defect(
        "Input.Toggle without title",
        _form_with(lambda c: c["body"][7].pop("title")),
        "$.body[7]: 'title' is a required property",
        None,
    ),
    Defect(
        "Schema 1.6 property in a 1.5 card",
        _form_with(lambda c: c["body"][1].update(labelPosition="inline")),
        "$.body[1]: Additional properties are not allowed ('labelPosition' was unexpected)",
        'parse UnsupportedProperty: Property "labelPosition" is supported in version 1.6, '
        "but you are using version 1.5.",
    ),
    Defect(
        "Table cell that is not a TableCell",
        _card(
            {
                "type": "Table",
                "columns": [{"width": 1}],
                "rows": [{"type": "TableRow", "cells": [{"type": "TextBlock", "text": "x"}]}],
            }
        ),
        "$.body[0].rows[0].cells[0]: 'items' is a required property",
        'parse ElementTypeNotAllowed: Element type "TextBlock" is not allowed in this context.',
    ),
    Defect(
        "FactSet fact without value",
        _card({"type": "FactSet", "facts": [{"title": "Number"}]}),
        "$.body[0].facts[0]: 'value' is a required property",
        None,
    ),
    Defect(
        "Image without url, nested in a column",
        _card({"type": "ColumnSet", "columns": [{"type": "Column", "items": [{"type": "Image"}]}]}),
        "$.body[0].columns[0].items[0]: 'url' is a required property",
        None,
    ),
    Defect(
        "Action.OpenUrl without url",
        _card(actions=[{"type": "Action.OpenUrl", "title": "Open"}]),
        "$.actions[0]: 'url' is a required property",
        'validate PropertyCantBeNull: Property "url" must be set. (at Action.OpenUrl)',
    ),
    Defect(
        "element without type",
        _card({"text": "hello"}),
        "$.body[0]: missing 'type'",
        'parse UnknownElementType: Unknown element type "undefined"',
    ),
    Defect(
        "top-level card without version",
        {"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "x"}]},
        "$: 'version' is a required property",
        None,
    ),
    Defect(
        "model keyword misspelt (the models accept and emit unknown keywords)",
        card_payload(AdaptiveCard(body=[TextBlock(text="x", is_subtile=True)])),
        "$.body[0]: Additional properties are not allowed ('is_subtile' was unexpected)",
        None,
    ),
    Defect(
        "ac_schema of microsoft-teams-cards, which it emits as `schema`, not `$schema`",
        card_payload(AdaptiveCard(ac_schema="http://adaptivecards.io/schemas/adaptive-card.json")),
        "$: Additional properties are not allowed ('schema' was unexpected)",
        None,
    ),
    Defect(
        "Table firstRowAsHeaders: the models' and the library's spelling, not the schema's",
        card_payload(
            AdaptiveCard(
                body=[
                    Table(
                        first_row_as_headers=True,
                        columns=[ColumnDefinition(width=1)],
                        rows=[TableRow(cells=[TableCell(items=[TextBlock(text="x")])])],
                    )
                ]
            )
        ),
        "$.body[0]: Additional properties are not allowed ('firstRowAsHeaders' was unexpected)",
        None,
    ),
    Defect(
        "msteams width that Teams does not know",
        _form_with(lambda c: c["msteams"].update(width="wide")),
        "$.msteams.width: 'wide' is not one of ['full', 'Full']",
        None,
    ),
]

# Defects that only the JavaScript library reports: the schema cannot express them.
LIBRARY_ONLY_DEFECTS = [
    Defect(
        "duplicate input ids",
        _form_with(lambda c: c["body"][4].update(id="user")),
        "",
        'validate DuplicateId: Duplicate Id "user".',
    ),
    Defect(
        "required input without an error message",
        _form_with(lambda c: c["body"][1].pop("errorMessage")),
        "",
        "validate RequiredInputsShouldHaveErrorMessage: Required inputs should have an error "
        'message (at Input.Text id="user")',
    ),
]


@pytest.fixture(scope="module")
def library_verdicts() -> dict[str, list[str]]:
    """What the JavaScript library says about every defect card, from one Node process."""
    defects = DEFECTS + LIBRARY_ONLY_DEFECTS
    events = js_library_events([defect.card for defect in defects])
    return {defect.name: found for defect, found in zip(defects, events, strict=True)}


@pytest.mark.parametrize("defect", DEFECTS, ids=lambda defect: defect.name)
def test_schema_catches_planted_defect(defect: Defect) -> None:
    errors = schema_errors(defect.card)
    assert any(defect.schema_finds in error for error in errors), errors


@pytest.mark.parametrize("defect", DEFECTS + LIBRARY_ONLY_DEFECTS, ids=lambda defect: defect.name)
def test_library_verdict_on_planted_defect(
    defect: Defect, library_verdicts: dict[str, list[str]]
) -> None:
    found = library_verdicts[defect.name]
    if defect.library_finds is None:
        assert found == []
    else:
        assert any(defect.library_finds in event for event in found), found


@pytest.mark.parametrize("defect", LIBRARY_ONLY_DEFECTS, ids=lambda defect: defect.name)
def test_schema_cannot_see_library_only_defect(defect: Defect) -> None:
    assert schema_errors(defect.card) == []


def test_assert_valid_cards_names_each_card_and_problem() -> None:
    cards: dict[str, CardLike] = {
        "good": SAMPLE_CARDS["user_summary"],
        "broken_form": _form_with(lambda c: c["body"][1].pop("id")),
    }
    with pytest.raises(AssertionError) as raised:
        assert_valid_cards(cards)
    report = str(raised.value)
    assert "1 invalid Adaptive Card(s)" in report
    assert "broken_form:" in report
    assert "good" not in report
    assert "schema: $.body[1]: 'id' is a required property" in report
    assert "adaptivecards.js: validate PropertyCantBeNull: All inputs must have a unique Id." in (
        report
    )


def test_unnamed_cards_are_named_by_position() -> None:
    problems = card_problems([SAMPLE_CARDS["user_summary"], _card({"type": "TextBlock"})])
    assert list(problems) == ["card[1]"]


def test_fifty_cards_go_through_one_node_process() -> None:
    payloads = [card_payload(card) for card in SAMPLE_CARDS.values()] * 10
    assert js_library_events(payloads) == [[] for _ in payloads]


def test_official_schema_file_is_the_1_5_schema() -> None:
    schema = official_schema()
    assert schema_path().name == "schema-1.5.json"
    assert schema["$schema"] == "http://json-schema.org/draft-06/schema#"
    definitions = schema["definitions"]
    assert {"Table", "TableRow", "TableCell", "Action.Execute", "Refresh"} <= set(definitions)
    assert definitions["Table"]["version"] == "1.5"
    # What the Teams additions exist for: the official file alone rejects them.
    assert "choices.data" not in definitions["Input.ChoiceSet"]["properties"]
    assert "msteams" not in definitions["AdaptiveCard"]["properties"]


def test_missing_node_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CardCheckSetupError, match="`node` is not on PATH"):
        js_library_events([card_payload(SAMPLE_CARDS["user_summary"])])


def test_missing_library_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr(jslib, "LIBRARY_PATH", tmp_path / "adaptivecards.js")
    with pytest.raises(CardCheckSetupError, match="run `npm install`"):
        js_library_events([card_payload(SAMPLE_CARDS["user_summary"])])


def test_missing_schema_package_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.cardcheck.schema.SCHEMA_DISTRIBUTION", "no-such-distribution")
    with pytest.raises(CardCheckSetupError, match="which is not installed"):
        schema_path()
