"""An e-mail address in a narrow column wraps after its "@" or a dot, never inside a word, and
still reads as exactly the address."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cards.common import breakable_email, plain

ZERO_WIDTH_SPACE = "\u200b"


@given(st.emails() | st.text(max_size=80))
def test_an_address_only_gains_invisible_breaks_after_its_at_and_dots(address: str) -> None:
    shown = breakable_email(address)
    assert shown.replace(ZERO_WIDTH_SPACE, "") == plain(address)
    for index, character in enumerate(shown):
        if character == ZERO_WIDTH_SPACE:
            assert shown[index - 1] in "@."  # a break only right after "@" or "."
            assert index + 1 < len(shown)  # and never at the end


def test_a_long_address_breaks_between_its_parts() -> None:
    assert breakable_email("ada.lovelace@contoso.example").split(ZERO_WIDTH_SPACE) == [
        "ada.",
        "lovelace@",
        "contoso.",
        "example",
    ]
