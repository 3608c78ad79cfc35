"""Typed commands: what Teams puts in the compose box reaches a verb."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.switchboard import parse_command
from cards.actions import Verb


def test_every_manifest_command_is_understood() -> None:
    """Teams types a command's title into the compose box: each must reach a verb."""
    manifest = json.loads(Path("manifest/manifest.json").read_text(encoding="utf-8"))
    titles = {
        command["title"]
        for bot in manifest["bots"]
        for command_list in bot["commandLists"]
        for command in command_list["commands"]
    }
    assert titles
    assert {title: parse_command(title) is not None for title in titles} == dict.fromkeys(
        titles, True
    )


@pytest.mark.parametrize(
    ("text", "verb", "data"),
    [
        ("Help", Verb.HOME, {}),
        ("  create   user ", Verb.USER_CREATE_OPEN, {}),
        ("find ada lovelace", Verb.USER_FIND, {"query": "ada lovelace"}),
        ("numbers 1111", Verb.NUMBERS_OPEN, {"digits": "1111"}),
        ("free numbers", Verb.NUMBERS_OPEN, {"digits": ""}),
        ("caller id priya", Verb.USER_FIND, {"query": "priya", "then": "callerid"}),
        ("sync status", Verb.SYNC_OPEN, {}),
        ("unlicensed users", Verb.UNLICENSED_OPEN, {}),
    ],
)
def test_commands_parse_to_verbs_and_data(text: str, verb: Verb, data: dict[str, str]) -> None:
    assert parse_command(text) == (verb, data)


def test_other_text_is_not_a_command() -> None:
    assert parse_command("what is the weather") is None
