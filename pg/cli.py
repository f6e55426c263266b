"""What every command shares on the command line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

EXIT_INVALID = 2  # bad input, for every command: one line, nothing created


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message} (see --help)\n")


def exit_fast(command: Callable[[], Any]) -> NoReturn:
    """Run ``command`` and exit with its status, without the interpreter's teardown.

    Freeing torch's, Hydra's and Optuna's modules one by one takes 0.3-0.8 s after the
    work is done.  Exit handlers still run first (the record process is waited for, a
    local Ray instance stopped, logs flushed), and so do threads that are not daemons.
    """
    import atexit
    import os
    import sys
    import threading

    code = 0
    try:
        command()
    except SystemExit as exc:
        if isinstance(exc.code, int):
            code = exc.code
        elif exc.code is not None:
            print(exc.code, file=sys.stderr)
            code = 1
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
