"""Value checks shared by every floor: whole numbers that are not bools, finite real numbers.

``is_whole`` and ``is_real`` answer True or False; ``check_whole`` and
``check_real`` raise one UserError that names the value and what it must be.
A bool is never a number here: ``True`` would otherwise pass as 1.
"""

import math
from numbers import Integral, Real

from data.errors import UserError


def is_whole(value, minimum=None):
    """True for a Python or NumPy integer (not a bool), at least ``minimum`` if given."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        return False
    return minimum is None or value >= minimum


def is_real(value, low=-math.inf, high=math.inf, *, high_open=False):
    """True for a finite real number (not a bool) in ``[low, high]`` (``[low, high)`` if high_open)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        return False
    return low <= value < high if high_open else low <= value <= high


def check_whole(name, value, minimum=None):
    """``value`` as an int, or a UserError: "<name> must be a whole number >= <minimum>"."""
    if not is_whole(value, minimum):
        least = "" if minimum is None else f" >= {minimum}"
        raise UserError(f"{name} must be a whole number{least}, got {value!r}")
    return int(value)


def check_real(name, value, low=-math.inf, high=math.inf, *, high_open=False):
    """``value`` as a float, or a UserError naming the range it must lie in."""
    if not is_real(value, low, high, high_open=high_open):
        raise UserError(f"{name} must be {describe_range(low, high, high_open)}, got {value!r}")
    return float(value)


def describe_range(low, high, high_open=False):
    """'a finite number', 'a number >= 0', 'a number in [0, 1)' ... for messages."""
    if low == -math.inf and high == math.inf:
        return "a finite number"
    if high == math.inf:
        return f"a finite number >= {low:g}"
    if low == -math.inf:
        return f"a number {'<' if high_open else '<='} {high:g}"
    return f"a number in [{low:g}, {high:g}{')' if high_open else ']'}"
