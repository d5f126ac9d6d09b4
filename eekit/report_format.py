"""One way to write a fraction as a percentage, so the README, lesson prose and cell outputs round alike.

Model cards store fractions rounded to 4 digits (``0.6515``); a binary float of that value sits just below it, so
``f"{0.6515:.1%}"`` prints ``65.1%`` where a reader rounding the card prints ``65.2``. :func:`pct` rounds half up
on the decimal digits as written. Profiles hold float32 accuracies (1989/2000 is stored as 0.99449998), so the
fraction is first rounded to 6 decimals, below float32's precision and far below any digit printed.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal

__all__ = ["pct", "pcts", "table"]


def pct(fraction: float, digits: int = 1, unit: str = "%") -> str:
    """``pct(0.6515) == "65.2%"``; ``digits`` after the point; ``unit=" %"`` for prose, ``""`` for a bare number."""
    exact = Decimal(repr(float(fraction))).quantize(Decimal("1e-6"), rounding=ROUND_HALF_UP)
    value = (exact * 100).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    if value == 0:
        value = abs(value)  # never "-0.0"
    return f"{value}{unit}"


def pcts(fractions, digits: int = 1, sep: str = " / ", unit: str = " %") -> str:
    """A list of fractions as ``"98.80 / 99.40 / 99.45 %"`` (the README's tables)."""
    return sep.join(pct(f, digits, "") for f in fractions) + unit


def table(result: dict, as_json: bool) -> str:
    """A result as the command line prints it: indented JSON, or one ``key  value`` line per key."""
    if as_json:
        return json.dumps(result, indent=2)
    width = max(len(k) for k in result)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in result.items())
