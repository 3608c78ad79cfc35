"""The typed payloads the card builders and the handlers share: modes are closed choices,
multi-selects are id lists, ids fit the database, and what a button carries reads back as the
same model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cards.actions import (
    MAX_ID,
    CreateUserForm,
    EditUserForm,
    EnableUsersForm,
    SaveHuntGroups,
    Selection,
)


def test_a_multi_select_reads_as_ids() -> None:
    assert EnableUsersForm.model_validate({"users": "12, 15,"}).users == Selection((12, 15))
    assert EnableUsersForm.model_validate({"users": ""}).users == Selection()
    assert EnableUsersForm.model_validate({}).users == Selection()
    for unreadable in ("1;x", "12,abc", "9" * 12, str(MAX_ID + 1), "0", "-3"):
        assert EnableUsersForm.model_validate({"users": unreadable}).users.unreadable, unreadable
    for malformed in (["1"], 5, {"a": 1}, True):
        with pytest.raises(ValidationError):
            EnableUsersForm.model_validate({"users": malformed})


def test_a_button_carries_what_the_handler_reads_back() -> None:
    form = SaveHuntGroups(ent=3, user_id=7, groups=Selection((4, 9)), new_group="Sales")
    payload = form.payload()
    assert payload["groups"] == "4,9"
    assert SaveHuntGroups.model_validate(payload) == form


def test_modes_are_closed_choices_and_blank_keeps() -> None:
    assert CreateUserForm.model_validate({"number_mode": "pick"}).number_mode == "pick"
    assert EditUserForm.model_validate({"user_id": 1, "version": 1}).number_mode == "keep"
    assert (
        EditUserForm.model_validate({"user_id": 1, "version": 1, "extension_mode": " "})
    ).extension_mode == "keep"
    for field, value in (("number_mode", "sometimes"), ("extension_mode", "none")):
        with pytest.raises(ValidationError):
            CreateUserForm.model_validate({field: value})


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
