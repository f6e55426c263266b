"""What every command shares on the command line."""

from __future__ import annotations

import argparse
from typing import NoReturn

EXIT_INVALID = 2  # bad input, for every command: one line, nothing created


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message} (see --help)\n")
