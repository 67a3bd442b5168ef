"""The command line: train, evaluate, predict, and look inside a from-scratch NumPy CNN.

    python main.py                       # the main job: train the reference model on MNIST
    python main.py train --help          # every training option
    python main.py evaluate              # the shipped best_params.npz on the MNIST test set
    python main.py predict digit.png     # top-3 classes of a handwritten digit picture

A mistake in the input (an unknown option value, a missing or broken file)
ends with one line on stderr and exit status 2; --debug shows the traceback.
"""

import argparse
import difflib
import os
import signal
import sys
import threading

from core import commands
from core.commands.options import thread_count


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit 2), like UserError."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}; see {self.prog} --help\n")


class CommandParser(OneLineParser):
    """The parser of one command, which declares its options when it is first used.

    So a command's imports (explain's methods, say) cost only the runs of that command. It
    reports an unknown option itself, with the command's --help and the nearest option.
    """

    def __init__(self, *, command, **kwargs):
        super().__init__(**kwargs)
        self.unbuilt = command

    def parse_known_args(self, args=None, namespace=None):
        if self.unbuilt is not None:
            add_global_options(self, default=argparse.SUPPRESS)  # also after the command
            self.unbuilt.add_arguments(self)
            self.unbuilt = None
        namespace, unknown = super().parse_known_args(args, namespace)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}{self.nearest(unknown)}")
        return namespace, unknown

    def nearest(self, unknown):
        """'' or " (did you mean --epochs?)" for the first unknown option like one of ours."""
        for text in unknown:
            if text.startswith("--"):
                near = difflib.get_close_matches(text.split("=")[0], self._option_string_actions)
                if near:
                    return f" (did you mean {near[0]}?)"
        return ""


def add_global_options(parser, default=None):
    """--debug and --threads. The command parsers take them too (``default`` SUPPRESS there,
    so that one given before the command is kept)."""
    parser.add_argument("--debug", action="store_true", default=default or False,
                        help="show full tracebacks on errors")  # fmt: skip
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=default,
        help="worker threads, each carrying a shard of every batch (default: all cores)",
    )


def build_parser():
    """The parser of the whole command line: the global options, one sub-parser per command."""
    parser = OneLineParser(
        prog="python main.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for command in commands.COMMANDS:
        sub.add_parser(
            command.name, help=command.help, description=command.description, command=command
        )
    return parser


def parse(argv):
    """The parsed command line; no command means ``train``, with any options that follow
    (``python main.py --epochs 2`` is ``python main.py train --epochs 2``)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    first = past_global_options(argv)
    if first == len(argv) or argv[first].startswith("-") and argv[first] not in ("-h", "--help"):
        argv.insert(first, "train")  # the main job: train the reference model
    return parser.parse_args(argv)


def past_global_options(argv):
    """The index of the first word of ``argv`` after the leading --debug and --threads N."""
    i = 0
    while i < len(argv):
        if argv[i] == "--debug" or argv[i].startswith("--threads="):
            i += 1
        elif argv[i] == "--threads":
            i += 2
        else:
            break
    return min(i, len(argv))


class Stopped:
    """SIGTERM and SIGHUP (``kill``, a scheduler, a closed terminal) stop a command as Ctrl-C
    does: training writes its checkpoint. The exit status is then 128 + the signal's number."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.signal = None

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():  # where handlers can be set
            self.previous = {s: signal.signal(s, self.handle) for s in self.SIGNALS}
        return self

    def handle(self, number, frame):
        self.signal = number
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def status(self):
        return 130 if self.signal is None else 128 + self.signal


def main(argv=None):
    args = parse(argv)
    run = {command.name: command.run for command in commands.COMMANDS}[args.command]
    with Stopped() as stopped:
        return run_command(run, args, stopped)


def run_command(run, args, stopped):
    """``run(args)``, its mistakes as one line and exit status 2, a stop as 130 (Ctrl-C) or
    128 + the signal (``stopped``, a Stopped)."""
    from core.learn.device import use_device
    from data.errors import UserError
    from model.shards import set_threads

    try:
        if args.threads:
            set_threads(args.threads)
        use_device(getattr(args, "device", "cpu"))  # the commands without --device: the CPU
        return run(args) or 0
    except UserError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the user named cannot be read or written
        if args.debug:
            raise
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # training's says where its checkpoint is
        print(str(e) or "interrupted", file=sys.stderr)
        return stopped.status()


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files; no window
    sys.exit(main())
