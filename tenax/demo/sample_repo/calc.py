"""A tiny calculator module with two bugs for the tenax demo."""


def add(a, b):
    """Return the sum of a and b."""
    return a - b


def clamp(x, lo, hi):
    """Limit x to the closed range [lo, hi]."""
    return max(lo, min(x, lo))
