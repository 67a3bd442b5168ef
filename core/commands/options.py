"""What the commands share: the parsers of numbers for argparse's ``type=``, and the options
that many commands take (--params, --data-dir, --out, --overwrite, --seed, --limit, --device),
each declared here once.

A number's range is a ``Number`` of core/learn/config.py, so that a training option, its
``sweep --set`` value and every other command refuse a bad number in the same words. A text
that is no number is reported by argparse as "invalid <parser's name> value: '<text>'"; a
number out of range as "must be <what it must be>, got <text>".
"""

import argparse
from pathlib import Path

from core.learn.config import (
    DEVICES,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    Number,
    OutOfRange,
)
from data.augment import TTA_VIEWS

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PARAMS = ROOT / "best_params.npz"
MAX_THREADS = 1024  # more threads than this is a typo, not a machine


def number_parser(number):
    """The argparse ``type=`` of a ``Number``: text -> int or float within its bounds.

    The function is named after the number (``positive_int``): argparse names it in
    "invalid positive_int value: '1.5'".
    """

    def parse(text):
        try:
            return number.read(text)
        except OutOfRange as err:  # argparse shows an ArgumentTypeError's message as it is
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = parse.__qualname__ = number.name
    parse.__doc__ = f"``text`` as {number.wanted()}, for argparse ``type=``."
    return parse


positive_int = number_parser(POSITIVE_INT)  # epochs, batch size, counts
non_negative_int = number_parser(NON_NEGATIVE_INT)  # a seed
positive_float = number_parser(POSITIVE_FLOAT)  # a learning rate, a step size
thread_count = number_parser(Number("thread_count", int, low=1, high=MAX_THREADS))
port_number = number_parser(Number("port_number", int, low=0, high=65535))  # 0: any free one


def add_params(parser, help, default=SHIPPED_PARAMS, several=False):
    """--params, the model file (``several``: one or more, a list)."""
    if several:
        parser.add_argument("--params", type=Path, nargs="+", default=[default], help=help)
    else:
        parser.add_argument("--params", type=Path, default=default, help=help)


def add_data_dir(parser, help="folder holding the dataset's files, if not the default"):
    """--data-dir, where the dataset's files are."""
    parser.add_argument("--data-dir", help=help)


def add_out(parser, help, default=None):
    """--out, the folder (or file) the command writes."""
    parser.add_argument("--out", type=Path, default=default, help=help)


def add_overwrite(parser, help="replace --out if it exists (refused otherwise)"):
    """--overwrite, to replace what --out holds."""
    parser.add_argument("--overwrite", action="store_true", help=help)


def add_seed(parser, what):
    """--seed (default 0) of the command's random draws, ``what`` they are."""
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help=f"{what} (default: %(default)s)")  # fmt: skip


def add_limit(parser, help):
    """--limit N (default None: all) on the test images the command reads."""
    parser.add_argument("--limit", type=positive_int, default=None, help=help)


def add_device(parser):
    """--device cpu|gpu, where the command computes (main.py makes the choice before it runs)."""
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where to compute: cpu (NumPy) or gpu (CuPy on a CUDA GPU; "
                        'pip install -e ".[gpu]") (default: %(default)s)')  # fmt: skip


def add_tta(parser):
    """--tta flip|shift|flip+shift, test-time augmentation (data/augment.py TTA_VIEWS)."""
    parser.add_argument("--tta", choices=tuple(TTA_VIEWS),
                        help="test-time augmentation: the mean of the softmax probabilities of "
                        "each picture and its copies: flip, its mirror image (2 views); shift, "
                        "its four one-pixel shifts down, up, right and left, black filling the "
                        "edge uncovered (5 views); flip+shift, both, and the shifts of the "
                        "mirror image (10 views); flips never for digits (default: none)")  # fmt: skip


def add_model_options(parser, command):
    """--params, --data-dir, --out and --device, as every command that looks inside a model
    takes them."""
    add_params(parser, "the model file (default: the shipped best_params.npz)")
    add_data_dir(parser)
    add_device(parser)
    add_out(parser, f"folder for the files (default: <model folder>/<model name>-{command}; a "
            "folder that holds files already is never written into: -2, -3, ... is used "
            "instead)")  # fmt: skip
