"""Generated passwords, and the vault that keeps one encrypted until the sync has used it."""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

_SYMBOLS = "!@#$%^&*-_=+?"


def _uniform_characters(alphabet: str, length: int) -> str:
    """`length` characters drawn uniformly from `alphabet`, from one read of the system's
    random source instead of one per character (those reads were about a twentieth of a
    create-user turn's CPU). Bytes at or above the largest multiple of the alphabet's size
    are dropped, so every character is equally likely."""
    limit = 256 - 256 % len(alphabet)
    drawn: list[str] = []
    while len(drawn) < length:
        randomness = secrets.token_bytes(2 * length)
        drawn.extend(alphabet[byte % len(alphabet)] for byte in randomness if byte < limit)
    return "".join(drawn[:length])


def generate_password(length: int = 20, *, symbols: str = _SYMBOLS) -> str:
    """A random password with lower and upper case letters, digits and, unless `symbols` is
    empty, one of those symbols: Entra's complexity rules by default."""
    alphabet = string.ascii_letters + string.digits + symbols
    while True:
        candidate = _uniform_characters(alphabet, length)
        if (
            any(c.islower() for c in candidate)
            and any(c.isupper() for c in candidate)
            and any(c.isdigit() for c in candidate)
            and (not symbols or any(c in symbols for c in candidate))
        ):
            return candidate


class PasswordVault:
    """Symmetric encryption for secrets that must be stored for a while, never in plaintext."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_settings(cls, secret_key: str, key_file: Path) -> PasswordVault:
        """Use the configured key, or a key file (created with owner-only access if missing)."""
        if secret_key:
            return cls(secret_key.encode())
        if key_file.exists():
            return cls(key_file.read_bytes().strip())
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key)
        return cls(key)

    def seal(self, plaintext: str) -> str:
        """Encrypt a secret for storage."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, ciphertext: str) -> str | None:
        """Decrypt a stored secret; None when it was sealed with another key."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            return None
