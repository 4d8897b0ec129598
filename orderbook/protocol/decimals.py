"""Exact decimal values as the venue writes them, and the bound on their size.

Prices and quantities travel as *plain decimal strings*: ASCII digits with
at most one ``.`` and at least one digit (``"18.70"``, ``"0.000"``, ``"5"``).
Signs, exponents, spaces, NaN and floats are refused: they are not exact or
not what the venue sends.

The bound
---------
A value has at most :data:`MAX_INTEGER_DIGITS` (20) digits before the point
and at most :data:`MAX_DECIMALS` (18) after it; anything longer is refused as
malformed.  This admits every real market by a wide margin (tick sizes down
to ``1e-18``, prices and quantities below ``1e20``; the venue's smallest
ticks are around ``1e-10``, its prices below ``1e7``) and keeps every fixed
point key ``value * 10**scale`` (``scale <= 18``) below ``10**38``, so key
arithmetic stays cheap and can never blow up: a frame can no longer make the
book re-key itself to thousands of digits.  The bound is checked in O(1)
before any digit is converted.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["MAX_DECIMALS", "MAX_INTEGER_DIGITS", "MAX_VALUE_LENGTH", "decimal_str", "is_decimal_string",
           "value_key"]

MAX_DECIMALS = 18
"""Most digits a price or quantity may have after its decimal point."""

MAX_INTEGER_DIGITS = 20
"""Most digits a price or quantity may have before its decimal point."""

MAX_VALUE_LENGTH = MAX_INTEGER_DIGITS + 1 + MAX_DECIMALS
"""Longest plain decimal string within the bound (39 characters)."""


def is_decimal_string(value: object) -> bool:
    """True when ``value`` is a plain non-negative decimal string within the bound.

    Cost: O(len(value)) for strings of at most 39 characters (O(1) refusal
    beyond), about 0.1 µs.  Accepts ASCII digits with at most one ``.`` and
    at least one digit, at most 20 of them before the point and 18 after.
    """
    if type(value) is not str or len(value) > MAX_VALUE_LENGTH or not value.isascii():
        return False
    whole, dot, fraction = value.partition(".")
    return (
        len(whole) <= MAX_INTEGER_DIGITS
        and len(fraction) <= MAX_DECIMALS
        and (whole + fraction).isdecimal()
        and "." not in fraction
    )


def decimal_str(value: Decimal) -> str:
    """An exact decimal in plain notation (never ``1E-8``): ``"0.00000001"``."""
    return format(value, "f")


def value_key(text: str) -> str:
    """A key for the value of a plain decimal string: two spellings of one
    value (``"1.50"``, ``"1.5"``, ``"01.5"``) have the same key, two values
    never do.  It is the spelling without leading zeros and without trailing
    zeros after the point (``"1.5"``; ``"0.5"`` -> ``".5"``; zero -> ``""``).

    Cost: about 0.1 µs, a few string methods; used instead of
    ``Decimal(text)`` as a dict key where levels are merged, because hashing
    a ``Decimal`` costs about 0.6 µs.  ``text`` must be a plain decimal
    string (:func:`is_decimal_string`).
    """
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.lstrip("0")
