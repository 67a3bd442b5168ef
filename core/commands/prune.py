"""``python main.py prune``: global magnitude pruning of a model's weights, with fine-tuning."""

import argparse
import time
from pathlib import Path

from core.commands.command import Command
from core.commands.options import (
    add_data_dir,
    add_out,
    add_overwrite,
    add_params,
    non_negative_int,
    positive_float,
)


def sparsity_list(text):
    """Comma-separated fractions in [0, 1); returns them as a list of floats."""
    from core.compress.prune import check_sparsity
    from data.errors import UserError

    try:
        return [check_sparsity(float(item), "each sparsity") for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated numbers in [0, 1), got {text!r}"
        ) from None
    except UserError as err:
        raise argparse.ArgumentTypeError(f"{err}") from None


def add_arguments(parser):
    add_params(parser, "the model file (default: best_params.npz)")
    parser.add_argument(
        "--sparsity",
        type=sparsity_list,
        required=True,
        help="comma-separated fractions of the weights to prune, each in [0, 1), e.g. "
        "0.5,0.8,0.9,0.95",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=non_negative_int,
        default=2,
        help="epochs of the model's own training recipe after pruning (default: %(default)s)",
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        help="fine-tuning learning rate, cosine-decayed (default: a tenth of the model's own)",
    )
    add_data_dir(parser)
    add_out(parser, "folder for prune.csv, prune.png and the pruned model files "
            "(default: runs/prune/<model file name>)")  # fmt: skip
    add_overwrite(parser, "replace the results already in --out")


def run(args):
    from core.compress.prune import prune

    out = args.out or Path("runs") / "prune" / args.params.stem
    started = time.perf_counter()
    table, baseline = prune(
        args.params,
        args.sparsity,
        args.finetune_epochs,
        out,
        lr=args.lr,
        data_dir=args.data_dir,
        overwrite=args.overwrite,
    )
    shown = table.assign(**{col: 100 * table[col] for col in table.columns[1:]})
    print(f"\ntest accuracy (%), unpruned {100 * baseline:.2f}:")
    # no fine-tuning (--finetune-epochs 0): no accuracy after it, shown as "-", never NaN
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-"))
    minutes = (time.perf_counter() - started) / 60
    print(f"{minutes:.1f} min in all; files in {out}: prune.csv, prune.png, "
          f"{', '.join(f'sparsity_{s:g}.npz' for s in table['sparsity'])}")  # fmt: skip


COMMAND = Command(
    "prune",
    "global magnitude pruning of a model's weights, with fine-tuning",
    add_arguments,
    run,
    description="Prune the conv and fc weights of a model file by magnitude (one threshold "
    "over all of them), fine-tune with the pruned weights kept at zero, and write a table, "
    "a figure and one model file per sparsity.",
)
