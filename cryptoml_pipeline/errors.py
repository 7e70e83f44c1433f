"""Error types shared by the domain packages. Each carries a one-line, user-facing message."""

from __future__ import annotations


class CryptoMLError(Exception):
    """Base class of the project's expected errors."""


class InputError(CryptoMLError, ValueError):
    """Bad user input (unknown symbol, window outside the data, missing data dir...).

    The CLI prints the message on one line and exits with code 2.
    """


class DataValidationError(CryptoMLError, ValueError):
    """Market data violates its schema; the message names the file/symbol/timestamp."""


class MissingFundingError(CryptoMLError, ValueError):
    """A position was held over a funding settlement for which no funding rate is known."""
