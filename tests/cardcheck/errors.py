"""Errors of the card check itself, as opposed to problems found in cards."""


class CardCheckSetupError(RuntimeError):
    """A tool or file the card check needs is missing: install it, the check must not be skipped."""
