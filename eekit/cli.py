"""What every eekit command line shares (``python -m eekit`` and the module commands such as
``python -m eekit.compress.mcu``): a mistake is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn

# What a user can cause: bad input (ValueError), a failed tool or run (RuntimeError), a refused file (OSError).
USER_ERRORS = (ValueError, RuntimeError, OSError)


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other error of the command line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def run(command: Callable[[], int]) -> int:
    """Run a command's body; a user's mistake becomes one line on stderr and exit status 2."""
    try:
        return command()
    except USER_ERRORS as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)  # one line
        return 2
