"""Command-line options parsed one way for the CLI and the benchmarks: a user's mistake is one line, exit 2."""
from __future__ import annotations

import argparse

from .errors import UserError

DEVICES = ("cpu", "cuda")  # where a run trains


def at_least(low: int):
    "An argparse type: a whole number of at least `low` (0 is a value, not 'not given')."
    def check(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {v}")
        return v
    return check


positive_int = at_least(1)


class Parser(argparse.ArgumentParser):
    "argparse with one-line errors: the CLI's and the benchmarks' options are parsed the same way."
    def error(self, message):
        raise UserError(message)
