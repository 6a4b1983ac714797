"""argparse types for the command lines (`compile`, `compile bench`, `compile tune`): a bad
value becomes argparse's usage error naming the flag, not a crash deep in the run."""
from __future__ import annotations

import argparse


def at_least(low: int):
    """An argparse type: an int >= `low` (a bad value is argparse's usage error, not a crash later)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value
