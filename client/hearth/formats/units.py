"""Token units and the parsing of amounts and durations a user types (pure)."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

from hearth.errors import UserError

TOKEN = 10**18  # HRT has 18 decimals
SUPPLY = 1_000_000_000 * TOKEN  # fixed; below 2**96 so every balance fits the market's uint96


def parse_amount(text: str) -> int:
    """'1.5' HRT -> wei; UserError for zero, negative, malformed amounts or more than the supply."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise UserError(f"not an amount: {text!r}", hint="amounts are in HRT, e.g. 0.5") from None
    if not d.is_finite() or d <= 0:
        raise UserError(f"the amount must be positive, not {text}")
    if d * TOKEN > SUPPLY:
        raise UserError(f"{text} HRT is more than all the HRT there is ({format_amount(SUPPLY)} HRT)")
    wei = d * TOKEN
    if wei != wei.to_integral_value():
        raise UserError(f"{text} has more than 18 decimals")
    return int(wei)


def format_amount(wei: int) -> str:
    """wei -> HRT, exact and without an exponent ('0.000001', '100'), as parse_amount reads it back."""
    return f"{(Decimal(wei) / TOKEN).normalize():f}"


def parse_duration(text: str) -> int:
    """'90', '90s', '5m', '2h' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    mult = units.get(t[-1:])
    num = t[:-1] if mult else t
    try:
        value = float(num) * (mult or 1)
    except ValueError:
        raise UserError(f"not a duration: {text!r}", hint="use e.g. 30s, 5m, 2h") from None
    if not math.isfinite(value):
        raise UserError(f"not a duration: {text!r}", hint="use e.g. 30s, 5m, 2h")
    if value <= 0:
        raise UserError(f"the duration must be positive, not {text}")
    return int(value)
