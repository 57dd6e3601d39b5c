"""Errors that end a command with one line and an exit code."""
from __future__ import annotations

import argparse

EX_USAGE = 2
EX_CONFIG = 78


class UserError(Exception):
    """An error the user can fix; printed as one line."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def positive_int(s: str) -> int:
    """An argparse type: an integer >= 0."""
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2, EX_USAGE) instead of usage + error."""

    def error(self, message: str):
        self.exit(EX_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
