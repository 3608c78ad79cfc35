"""Generated passwords: Entra's complexity rules, and every character equally likely."""

from __future__ import annotations

import string
from collections import Counter

from services.passwords import _SYMBOLS, _uniform_characters, generate_password


def test_a_password_has_every_kind_of_character_and_nothing_else() -> None:
    allowed = set(string.ascii_letters + string.digits + _SYMBOLS)
    passwords = [generate_password() for _ in range(500)]

    for password in passwords:
        assert len(password) == 20
        assert set(password) <= allowed
        assert any(c.islower() for c in password) and any(c.isupper() for c in password)
        assert any(c.isdigit() for c in password) and any(c in _SYMBOLS for c in password)
    assert len(set(passwords)) == len(passwords)


def test_without_symbols_a_password_is_letters_and_digits_of_the_length_asked() -> None:
    password = generate_password(32, symbols="")

    assert len(password) == 32 and password.isalnum()


def test_every_character_of_the_alphabet_is_equally_likely() -> None:
    alphabet = string.ascii_letters + string.digits + _SYMBOLS
    draws = 300_000
    counts = Counter(_uniform_characters(alphabet, draws))

    expected = draws / len(alphabet)
    chi_square = sum((counts[c] - expected) ** 2 / expected for c in alphabet)
    # 74 degrees of freedom: a fair source stays below 150 all but once in ten million runs;
    # a modulo bias (keeping bytes 225 to 255) lands far above it.
    assert len(counts) == len(alphabet)
    assert chi_square < 150, chi_square
