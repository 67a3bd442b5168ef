"""The record of one command of ``python main.py``."""

from collections.abc import Callable
from typing import NamedTuple


class Command(NamedTuple):
    """One command: its name, its options and what it does.

    add_arguments(parser) declares its options on its argparse parser; run(args) does the
    work with the parsed options and returns the exit status (None: 0). A UserError it raises
    is one line on stderr and exit status 2 (main.py).
    """

    name: str  # as typed: python main.py NAME
    help: str  # one line in python main.py --help
    add_arguments: Callable
    run: Callable
    description: str  # the longer text of python main.py NAME --help: what it does, and writes
