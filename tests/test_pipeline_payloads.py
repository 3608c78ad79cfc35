"""The typed payloads the card builders and the handlers share: modes are closed choices,
multi-selects are id lists, ids fit the database, and what a button carries reads back as the
same model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cards.actions import (
    CHOICE_ERROR,
    MAX_ID,
    CallerIdForm,
    CreateUserForm,
    EditUserForm,
    EnableUsersForm,
    SaveHuntGroups,
)
from services.domain import CallerIdMode


def _choice_messages(model: type, data: dict[str, object]) -> dict[str, str]:
    """The fields refused as a choice the card does not offer, with their messages."""
    with pytest.raises(ValidationError) as refused:
        model.model_validate(data)
    problems = refused.value.errors()
    assert all(problem["type"] == CHOICE_ERROR for problem in problems), problems
    return {str(problem["loc"][0]): problem["msg"] for problem in problems}


def test_a_multi_select_reads_as_a_list_of_ids() -> None:
    assert EnableUsersForm.model_validate({"users": "12, 15,"}).users == [12, 15]
    assert EnableUsersForm.model_validate({"users": ""}).users == []
    assert EnableUsersForm.model_validate({}).users == []
    assert EnableUsersForm.model_validate({"users": [3, "4"]}).users == [3, 4]
    for unreadable in ("1;x", "12,abc", "9" * 12, str(MAX_ID + 1), "0", "-3", 5, {"a": 1}, True):
        messages = _choice_messages(EnableUsersForm, {"users": unreadable})
        assert messages == {
            "users": "Switchboard could not read that selection. Select the users again."
        }, unreadable


def test_a_button_carries_what_the_handler_reads_back() -> None:
    form = SaveHuntGroups(ent=3, user_id=7, groups=[4, 9], new_group="Sales")
    payload = form.payload()
    assert payload["groups"] == "4,9"
    assert SaveHuntGroups.model_validate(payload) == form


def test_closed_choices_say_what_to_choose() -> None:
    assert _choice_messages(CreateUserForm, {"licence": "platinum", "number_mode": "x"}) == {
        "licence": "Choose the calling licence: Essentials, Basic or no licence.",
        "number_mode": "Choose how to give the direct number: the next free one, one you pick, "
        "or none.",
    }
    assert EnableUsersForm.model_validate({"licence": " Basic "}).licence == "basic"
    assert _choice_messages(EnableUsersForm, {"licence": "gold"}) == {
        "licence": "Choose Essentials or Basic."
    }
    form = CallerIdForm.model_validate({"user_id": 1, "version": 1, "mode": "company_main"})
    assert form.mode is CallerIdMode.COMPANY_MAIN
    assert _choice_messages(CallerIdForm, {"user_id": 1, "version": 1, "mode": "own"}) == {
        "mode": "Choose which number to present: own, company main, another or anonymous."
    }


@given(st.lists(st.integers(min_value=1, max_value=MAX_ID), max_size=30))
def test_any_selection_of_rows_goes_to_a_card_and_back(ids: list[int]) -> None:
    form = EnableUsersForm(users=ids, licence="basic")
    assert EnableUsersForm.model_validate(form.payload()) == form


@given(st.one_of(st.text(max_size=40), st.integers(), st.none(), st.booleans(), st.floats()))
def test_any_value_of_a_choice_reads_as_one_of_its_values_or_says_what_to_choose(
    value: object,
) -> None:
    data = {"user_id": 1, "version": 1, "mode": value, "number_mode": value, "licence": value}
    for model in (CallerIdForm, EditUserForm):
        try:
            form = model.model_validate(data)
        except ValidationError as refused:
            for problem in refused.errors():
                assert problem["type"] == CHOICE_ERROR and problem["msg"].startswith("Choose")
        else:
            if model is CallerIdForm:
                assert form.mode in set(CallerIdMode)
            else:
                assert form.number_mode in ("auto", "pick", "none", "keep")
                assert form.licence in ("essentials", "basic", "none", "")


def test_modes_are_closed_choices_and_blank_keeps() -> None:
    assert CreateUserForm.model_validate({"number_mode": "pick"}).number_mode == "pick"
    assert EditUserForm.model_validate({"user_id": 1, "version": 1}).number_mode == "keep"
    assert (
        EditUserForm.model_validate({"user_id": 1, "version": 1, "extension_mode": " "})
    ).extension_mode == "keep"
    for field, value in (("number_mode", "sometimes"), ("extension_mode", "none")):
        assert list(_choice_messages(CreateUserForm, {field: value})) == [field]


@pytest.mark.parametrize("value", [0, -1, MAX_ID + 1, 2**70, "4" * 400, "\x00", 3.5])
def test_ids_beyond_the_database_are_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        EditUserForm.model_validate({"user_id": value, "version": 1})
    with pytest.raises(ValidationError):
        EditUserForm.model_validate({"user_id": 1, "version": value})


def test_text_with_nul_or_beyond_any_input_is_refused() -> None:
    for text in ("Ada\x00", "x" * 5000):
        with pytest.raises(ValidationError):
            CreateUserForm.model_validate({"display_name": text})
