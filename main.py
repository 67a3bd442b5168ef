"""The command line: train, evaluate, predict, and look inside a from-scratch NumPy CNN.

    python main.py                       # the main job: train the reference model on MNIST
    python main.py train --help          # every training option
    python main.py evaluate              # the shipped best_params.npz on the MNIST test set
    python main.py predict digit.png     # top-3 classes of a handwritten digit picture

A mistake in the input (an unknown option value, a missing or broken file)
ends with one line on stderr and exit status 2; --debug shows the traceback.
"""

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SHIPPED_PARAMS = ROOT / "best_params.npz"


MAX_THREADS = 1024  # more threads than this is a typo, not a machine


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit 2), like UserError."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}; see {self.prog} --help\n")


def whole_number(text, low=None, high=None):
    """``text`` as an int in [low, high] (either bound optional), for argparse ``type=``.

    Text that is no whole number raises ValueError, which argparse reports as
    "invalid <function> value: '<text>'"; a number out of range raises ArgumentTypeError.
    """
    value = int(text)
    if (low is not None and value < low) or (high is not None and value > high):
        least = "" if low is None else f" >= {low}"
        most = "" if high is None else f" <= {high}"
        joined = " and" if least and most else ""
        raise argparse.ArgumentTypeError(f"must be a whole number{least}{joined}{most}, got {text}")
    return value


def real_number(text, low=0.0, *, low_open=False, high=math.inf):
    """``text`` as a finite float >= low (> low if low_open) and <= high, for argparse ``type=``.

    NaN and infinity are refused: float() accepts "nan" and "inf", and every comparison
    with NaN is False, so a NaN would pass a plain ``value < low`` check. Text that is
    no number raises ValueError (argparse: "invalid <function> value: '<text>'").
    """
    value = float(text)
    above = value > low if low_open else value >= low
    if not (math.isfinite(value) and above and value <= high):
        if math.isfinite(high):
            wanted = f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"
        elif low_open and low == 0:
            wanted = "a positive number"
        else:
            wanted = f"a finite number {'>' if low_open else '>='} {low:g}"
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
    return value


def port_number(text):
    """A TCP port in [0, 65535]; 0 lets the system pick a free one."""
    return whole_number(text, 0, 65535)


def positive_int(text):
    """A whole number >= 1 (epochs, batch size, counts)."""
    return whole_number(text, 1)


def non_negative_int(text):
    """A whole number >= 0 (a seed)."""
    return whole_number(text, 0)


def thread_count(text):
    """A whole number of threads in [1, MAX_THREADS]."""
    return whole_number(text, 1, MAX_THREADS)


def probability(text):
    """A number in [0, 1] (a probability)."""
    return real_number(text, 0.0, high=1.0)


def positive_float(text):
    """A finite number > 0 (a learning rate, a clipping norm)."""
    return real_number(text, 0.0, low_open=True)


def non_negative_float(text):
    """A finite number >= 0 (warm-up epochs, weight decay)."""
    return real_number(text, 0.0)


def positive_float_list(text):
    """Comma-separated finite numbers > 0; returns ``text`` unchanged (the sweep splits it)."""
    for item in text.split(","):
        try:
            positive_float(item)
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(
                f"must be comma-separated finite numbers > 0, got {text!r}"
            ) from None
    return text


def method_list(text):
    """Comma-separated explanation methods, each one of core.inside.explain.METHODS."""
    from core.inside.explain import METHODS

    methods = [m.strip() for m in text.split(",")]
    if not all(m in METHODS for m in methods):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated methods of {', '.join(METHODS)}, got {text!r}"
        )
    return list(dict.fromkeys(methods))


def budget_list(text):
    """Comma-separated attack budgets in [0, 1], e.g. "0,0.1,0.3", in the order given."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated numbers in [0, 1], got {text!r}"
        ) from None
    if not values or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"each budget must be in [0, 1], got {text!r}")
    return values


def limit_or_all(text):
    """A number of training images >= 1, or "all" (None: the whole training set)."""
    return None if text == "all" else positive_int(text)


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


def build_parser():
    from core.learn.config import RECIPES, TrainConfig
    from core.learn.loss import LOSSES

    defaults = TrainConfig()
    parser = OneLineParser(
        prog="python main.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="worker threads, each carrying a shard of every batch (default: all cores)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser(
        "train", help="train a model", description="Train a model and evaluate it on the test set."
    )
    train.add_argument(
        "--preset",
        choices=sorted(RECIPES),
        default="default",
        help="a named recipe; the options below override it (default: %(default)s); with "
        "--resume it only names the default --out",
    )
    train.add_argument(
        "--dataset",
        help="mnist, fashion-mnist, digits, cifar10, spiral, circles, line, zone, zone3d, "
        f"polynomial (a regression: --loss mse) (default: {defaults.dataset})",
    )
    train.add_argument(
        "--data-dir", help="folder holding the dataset's files (fashion-mnist, cifar10)"
    )
    train.add_argument(
        "--arch", help=f"a preset architecture or a blueprint .json file (default: {defaults.arch})"
    )
    train.add_argument(
        "--loss",
        choices=list(LOSSES),
        help="cross_entropy (classes) or mse (a regression dataset such as polynomial) "
        f"(default: {defaults.loss})",
    )
    train.add_argument(
        "--epochs",
        type=positive_int,
        help=f"passes over the training set (default: {defaults.epochs})",
    )
    train.add_argument(
        "--batch-size",
        type=positive_int,
        help=f"examples per update (default: {defaults.batch_size})",
    )
    train.add_argument(
        "--optimizer",
        help=f"sgd, momentum, nesterov, rmsprop, adagrad, adam, adamw (default: {defaults.optimizer})",
    )
    train.add_argument(
        "--lr", type=positive_float, help=f"base learning rate (default: {defaults.lr})"
    )
    train.add_argument(
        "--schedule",
        help=f"learning-rate schedule: constant, step, cosine (default: {defaults.schedule})",
    )
    train.add_argument(
        "--warmup-epochs",
        type=non_negative_float,
        help="linear learning-rate warm-up, in epochs (default: 0)",
    )
    train.add_argument(
        "--weight-decay",
        type=non_negative_float,
        help="L2 weight decay on the weights (decoupled for adamw; default: 0)",
    )
    train.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random shifts, rotations and scaling of the training images",
    )
    train.add_argument(
        "--crop",
        type=non_negative_int,
        metavar="PAD",
        help="random crops of the images zero-padded by PAD pixels (default: 0, none)",
    )
    train.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random horizontal flips (fashion-mnist, cifar10; never digits)",
    )
    train.add_argument(
        "--erase",
        type=probability,
        metavar="P",
        help="random erasing (cutout) of a rectangle in each image with probability P (default: 0)",
    )
    train.add_argument(
        "--seed", type=non_negative_int, help="makes the run repeatable (default: 0)"
    )
    train.add_argument(
        "--val-size",
        type=int,  # its range depends on the dataset: core/learn/train.py checks it
        help="validation images held out of training (default: 5000, or a tenth)",
    )
    train.add_argument(
        "--limit",
        type=positive_int,
        help="use N images of the training set only, the validation images included (a "
        "stratified sample), for a quick run",
    )
    train.add_argument(
        "--patience",
        type=positive_int,
        help="stop after N epochs without a better validation accuracy",
    )
    train.add_argument(
        "--clip-norm", type=positive_float, help="clip the gradients' global norm to this value"
    )
    train.add_argument(
        "--init-from",
        metavar="FILE",
        help="start from the model FILE: every layer whose name and array shapes match is "
        "copied (the run says which were and were not)",
    )
    train.add_argument(
        "--freeze",
        metavar="LAYERS",
        help="comma-separated layer names or patterns (conv1,conv2 or 'conv*') copied by "
        "--init-from and never updated: no optimizer state, no weight decay, fixed batch-norm "
        "running statistics",
    )
    train.add_argument(
        "--adversarial",
        choices=["fgsm"],
        help="adversarial training: each batch is replaced by its FGSM pictures from a random "
        "start in the --adv-eps ball (fast adversarial training, Wong et al. 2020)",
    )
    train.add_argument(
        "--adv-eps",
        type=positive_float,
        metavar="EPS",
        help=f"the L-infinity budget of --adversarial, pixels in [0, 1] (default: {defaults.adv_eps})",
    )
    train.add_argument(
        "--out",
        type=Path,
        help="run folder for the parameters, log and figures (default: runs/<preset>)",
    )
    again = train.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint, with its settings; only --epochs "
        "may change, to extend the run (a cosine or step schedule is then planned anew over "
        "the new total)",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (refused otherwise)",
    )

    evaluate = sub.add_parser(
        "evaluate",
        help="accuracy, per-class table and confusion matrix of a saved model (a regression "
        "model: MSE, R^2 and its fitted curve)",
    )
    evaluate.add_argument(
        "--params",
        type=Path,
        nargs="+",
        default=[SHIPPED_PARAMS],
        help="the model file (default: best_params.npz); several files: their ensemble "
        "(softmax probabilities averaged), with each member's accuracy",
    )
    evaluate.add_argument(
        "--data-dir", help="folder holding the dataset's files, if not the default"
    )
    evaluate.add_argument(
        "--split",
        choices=["test", "train"],
        default="test",
        help="the test set, or all the training images (default: %(default)s)",
    )
    evaluate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the figure goes (default: runs/evaluate/<model file name>-<hash of its path>, "
        "one folder per model file)",
    )

    predict = sub.add_parser("predict", help="classify pictures of handwritten digits")
    predict.add_argument(
        "images", nargs="+", type=Path, help="PNG or JPEG pictures, one digit each"
    )
    predict.add_argument(
        "--params",
        type=Path,
        nargs="+",
        default=[SHIPPED_PARAMS],
        help="the model file (default: best_params.npz); several files: their ensemble "
        "(softmax probabilities averaged)",
    )
    predict.add_argument(
        "--show", action="store_true", help="save each prepared 28x28 image beside its picture"
    )

    quantize = sub.add_parser(
        "quantize",
        help="an int8 copy of a saved model (batch norm folded, weights per channel)",
        description="Post-training int8 quantization: batch norm folded into the conv or fc "
        "before it, weights symmetric int8 with one scale per output channel, each conv and "
        "fc input with one scale calibrated on training images. evaluate and predict run the "
        "int8 arithmetic of the file written.",
    )
    quantize.add_argument(
        "--params",
        type=Path,
        default=SHIPPED_PARAMS,
        help="the float model file (default: best_params.npz)",
    )
    quantize.add_argument(
        "--calibration",
        type=positive_int,
        default=1000,
        metavar="N",
        help="training images that set the inputs' scales (default: %(default)s)",
    )
    quantize.add_argument(
        "--out", type=Path, default=None, help="the int8 model file (default: FILE.int8.npz)"
    )
    quantize.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (refused otherwise)"
    )
    quantize.add_argument(
        "--data-dir", help="folder holding the dataset's files, if not the default"
    )

    summary = sub.add_parser("summary", help="the layer table of an architecture or model file")
    shown = summary.add_mutually_exclusive_group()
    shown.add_argument(
        "--arch",
        default="minivgg",
        help="a preset or a blueprint .json file (default: %(default)s)",
    )
    shown.add_argument(
        "--params",
        type=Path,
        help="a model file: its layers, input shape and each layer's share of zero weights "
        "(a pruned model's sparsity)",
    )
    summary.add_argument(
        "--input-shape",
        default="1x28x28",
        help="one example's shape, e.g. 1x28x28 or 2 (default: %(default)s)",
    )
    summary.add_argument(
        "--classes", type=positive_int, default=10, help="number of classes (default: %(default)s)"
    )

    prune = sub.add_parser(
        "prune",
        help="global magnitude pruning of a model's weights, with fine-tuning",
        description="Prune the conv and fc weights of a model file by magnitude (one threshold "
        "over all of them), fine-tune with the pruned weights kept at zero, and write a table, "
        "a figure and one model file per sparsity.",
    )
    prune.add_argument(
        "--params",
        type=Path,
        default=SHIPPED_PARAMS,
        help="the model file (default: best_params.npz)",
    )
    prune.add_argument(
        "--sparsity",
        type=sparsity_list,
        required=True,
        help="comma-separated fractions of the weights to prune, each in [0, 1), e.g. "
        "0.5,0.8,0.9,0.95",
    )
    prune.add_argument(
        "--finetune-epochs",
        type=non_negative_int,
        default=2,
        help="epochs of the model's own training recipe after pruning (default: %(default)s)",
    )
    prune.add_argument(
        "--lr",
        type=positive_float,
        help="fine-tuning learning rate, cosine-decayed (default: a tenth of the model's own)",
    )
    prune.add_argument("--data-dir", help="folder holding the dataset's files, if not the default")
    prune.add_argument(
        "--out",
        type=Path,
        help="folder for prune.csv, prune.png and the pruned model files "
        "(default: runs/prune/<model file name>)",
    )
    prune.add_argument(
        "--overwrite", action="store_true", help="replace the results already in --out"
    )

    serve = sub.add_parser(
        "serve",
        help="a live page: draw a digit and watch every layer respond (Ctrl-C stops it)",
    )
    serve.add_argument(
        "--params",
        type=Path,
        default=SHIPPED_PARAMS,
        help="the model file, a 1x28x28 digit classifier (default: best_params.npz)",
    )
    serve.add_argument(
        "--port", type=port_number, default=8000, help="TCP port (default: 8000; 0: any free one)"
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )

    sub.add_parser("gradcheck", help="check every layer's backward pass against finite differences")

    sweep = sub.add_parser(
        "sweep",
        help="the same training over a grid of settings and several seeds, in parallel",
        description="Train every combination of the --set values, once per seed, in parallel "
        "processes or on a Dask cluster; writes runs.csv (every run), summary.csv (mean and "
        "standard deviation of the test and validation accuracy per configuration), sweep.png "
        "and one folder per run. Started again with the same options, it skips the runs that "
        "finished.",
    )
    sweep.add_argument(
        "--set",
        action="append",
        metavar="KEY=V1,V2",
        help="a setting to vary: any training option (optimizer, lr, arch, epochs, batch_size, "
        "...; - or _) or activation (relu, leaky_relu, sigmoid, tanh: swapped for every "
        "activation layer of the architecture); repeat for a grid, e.g. --set optimizer=sgd,adam "
        "--set lr=0.01,0.002; an optimizer varied without lr runs at its usual rate",
    )
    sweep.add_argument(
        "--optimizers",
        default=None,
        help="comma-separated, each at its usual rate or at --lrs (default without --set: "
        "sgd,momentum,rmsprop,adam)",
    )
    sweep.add_argument(
        "--lrs",
        type=positive_float_list,
        default=None,
        help="comma-separated learning rates, one per optimizer (default: each one's usual rate)",
    )
    sweep.add_argument(
        "--seeds",
        type=positive_int,
        default=3,
        help="runs per configuration, seeds 0 to N-1 (default: %(default)s)",
    )
    sweep.add_argument(
        "--preset",
        choices=sorted(RECIPES),
        help="the named training recipe every run starts from, with its architecture, epochs "
        "and all its images (default: the default recipe, cut short as below)",
    )
    sweep.add_argument("--dataset", help="dataset of every run (default: mnist)")
    sweep.add_argument("--data-dir", help="folder holding the dataset's files, on every worker")
    # not given: the preset's value, or the quick sweep's (core.experiments.sweep.QUICK)
    sweep.add_argument("--arch", default=argparse.SUPPRESS, help="architecture (default: minivgg)")
    sweep.add_argument(
        "--epochs", type=positive_int, default=argparse.SUPPRESS, help="epochs per run (default: 1)"
    )
    sweep.add_argument(
        "--limit",
        type=limit_or_all,
        default=argparse.SUPPRESS,
        help="training images per run, or all (default: 5000)",
    )
    sweep.add_argument(
        "--jobs", type=positive_int, default=None, help="parallel processes (default: all cores)"
    )
    sweep.add_argument(
        "--scheduler",
        metavar="tcp://HOST:8786",
        help="run on the workers of this Dask scheduler instead of local processes (--out must "
        "then be a folder every worker reaches by the same path)",
    )
    sweep.add_argument(
        "--out",
        type=Path,
        default=Path("runs/sweep"),
        help="folder for the tables, the figure and the runs' folders (default: %(default)s)",
    )
    add_inside_parsers(sub)
    return parser


def add_inside_parsers(sub):
    """The commands that look inside a trained model: explain, attack, visualize."""
    explain = sub.add_parser(
        "explain",
        help="which pixels a prediction rests on: saliency, SmoothGrad, Grad-CAM, occlusion",
        description="For each picture: the prepared input and its top 3, and a map of what "
        "the predicted class rests on, by each method. Without pictures: the first test "
        "images the model gets right and the first it gets wrong. Writes explain.csv and "
        "figures into a new folder.",
    )
    explain.add_argument("images", nargs="*", type=Path,
                         help="PNG or JPEG pictures of one digit each (default: test images)")  # fmt: skip
    explain.add_argument(
        "--method",
        type=method_list,
        default=["saliency", "gradcam", "occlusion"],
        help="comma-separated, of saliency, smoothgrad, gradcam, occlusion "
        "(default: saliency,gradcam,occlusion)",
    )
    explain.add_argument("--layer", help="Grad-CAM's layer, named as in summary (default: the "
                         "last map before pooling or flattening)")  # fmt: skip
    explain.add_argument("--seed", type=non_negative_int, default=0,
                         help="SmoothGrad's noise (default: %(default)s)")  # fmt: skip
    explain.add_argument("--limit", type=positive_int, default=None,
                         help="without pictures: choose among the first N test images")  # fmt: skip
    add_model_options(explain, "explain")

    visualize = sub.add_parser(
        "visualize",
        help="what the network looks for: class models, first-layer filters, top activations",
        description="Class model visualization (gradient ascent on the input for a class "
        "score, with L2, jitter and blur), the first layer's filters, and, for a layer, the "
        "test images that most activate each of its channels. Without --class or --layer: "
        "all of them (every class; Grad-CAM's default layer). Writes figures and CSVs into a "
        "new folder.",
    )
    visualize.add_argument("--class", dest="classes", type=non_negative_int, action="append",
                           metavar="K", help="a class to visualize (may be repeated)")  # fmt: skip
    visualize.add_argument("--layer", help="the layer whose channels' top test images are shown, "
                           "named as in summary")  # fmt: skip
    visualize.add_argument("--seed", type=non_negative_int, default=0,
                           help="the class models' start and jitter (default: %(default)s)")  # fmt: skip
    visualize.add_argument("--limit", type=positive_int, default=None,
                           help="search the first N test images only (default: all)")  # fmt: skip
    add_model_options(visualize, "visualize")

    attack = sub.add_parser(
        "attack",
        help="accuracy under adversarial attack (FGSM or PGD) against the budget eps",
        description="Adversarial examples in an L-infinity ball of radius eps (pixels in "
        "[0, 1], before normalization; pictures clipped to [0, 1]), from the cross-entropy "
        "with the true label, the model in inference mode. FGSM: one signed step of eps. "
        "PGD: --steps signed steps of --step-size from a random start in the ball, projected "
        "back after each step. Writes attack.csv (method, eps, accuracy), attack.png and "
        "adversarial_examples.png into a new folder.",
    )
    attack.add_argument("--method", choices=["fgsm", "pgd"], default="fgsm",
                        help="the attack (default: %(default)s)")  # fmt: skip
    attack.add_argument(
        "--eps",
        type=budget_list,
        default=[0.0, 0.05, 0.1, 0.15, 0.2, 0.3],
        help="comma-separated budgets in [0, 1] (default: 0,0.05,0.1,0.15,0.2,0.3)",
    )
    attack.add_argument("--steps", type=positive_int, default=40,
                        help="PGD steps (default: %(default)s)")  # fmt: skip
    attack.add_argument("--step-size", type=positive_float, default=0.01,
                        help="PGD step, in pixels (default: %(default)s)")  # fmt: skip
    attack.add_argument("--seed", type=non_negative_int, default=0,
                        help="PGD's random starts (default: %(default)s)")  # fmt: skip
    attack.add_argument("--limit", type=positive_int, default=None,
                        help="attack the first N test images only (default: all)")  # fmt: skip
    add_model_options(attack, "attack")


def add_model_options(parser, command):
    """--params, --data-dir and --out, as every command that looks inside a model takes them."""
    parser.add_argument(
        "--params", type=Path, default=SHIPPED_PARAMS, help="the model file (default: %(default)s)"
    )
    parser.add_argument("--data-dir", help="folder holding the dataset's files, if not the default")
    parser.add_argument(
        "--out", type=Path, default=None,
        help=f"folder for the files (default: <model folder>/<model name>-{command}; a folder "
        "that holds files already is never written into: -2, -3, ... is used instead)",
    )  # fmt: skip


def given_options(args):
    """The training settings the user gave on the command line, {TrainConfig field: value}."""
    from core.learn.config import TrainConfig

    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }


def train_config(args):
    """The recipe named by --preset, with every option the user gave on top."""
    from core.learn.config import RECIPES

    return dataclasses.replace(RECIPES[args.preset], **given_options(args))


def command_train(args):
    from core.learn.train import train
    from core.report import (
        describe,
        evaluate,
        evaluate_regression,
        is_regression,
        load_test_set,
        write_figures,
    )

    out = args.out or Path("runs") / args.preset
    started = time.perf_counter()
    if args.resume:  # the checkpoint's settings, with the options given checked against them
        result = train(None, out, resume=True, changes=given_options(args))
    else:
        result = train(train_config(args), out, overwrite=args.overwrite)
    data_dir = result.meta["config"]["data_dir"] if args.data_dir is None else args.data_dir
    x_test, y_test, raw = load_test_set(result.meta, data_dir)
    model = result  # has params, blueprint, meta
    regression = is_regression(model.meta)
    evaluation = (evaluate_regression if regression else evaluate)(model, x_test, y_test)
    figures = write_figures(
        model, evaluation, raw, y_test, out / "figures", describe(model), result.log
    )
    minutes = (time.perf_counter() - started) / 60
    if regression:
        score = f"test MSE {evaluation.mse:.4f}, R^2 {evaluation.r2:.4f} ({len(y_test)} points)"
    else:
        score = (
            f"test accuracy {100 * evaluation.accuracy:.2f}% ({evaluation.n_errors} errors in "
            f"{len(y_test)} test images)"
        )
    print(f"\n{score}, best epoch {result.meta['epoch']}, {minutes:.1f} min in all")
    print(
        f"files in {out}: best_params.npz, checkpoint.npz, log.csv, figures/ ({len(figures)} figures)"
    )


def command_evaluate(args):
    if len(args.params) > 1:
        return command_evaluate_ensemble(args)
    args.params = args.params[0]
    from core.learn.eval import format_table
    from core.plots import plot_confusion_matrix, plot_fitted_curve, save_figure
    from core.report import (
        describe,
        evaluate,
        evaluate_regression,
        evaluation_dir,
        is_regression,
        load_test_set,
        model_inputs,
    )
    from model.params_io import load_model

    model = load_model(args.params)
    out = args.out if args.out is not None else evaluation_dir(args.params)
    x, y, raw = load_test_set(model.meta, args.data_dir, args.split)
    print(f"{args.params}: {describe(model)}")
    if is_regression(model.meta):  # no classes: the error and the fitted curve
        fit = evaluate_regression(model, x, y)
        print(f"{args.split} MSE {fit.mse:.4f}, R^2 {fit.r2:.4f} ({len(y)} points)")
        fig = plot_fitted_curve(
            None,
            model.params,
            model.blueprint,
            raw,
            y,
            lambda points: model_inputs(points, model.meta),
            caption=f"{args.split} points: MSE {fit.mse:.4f}, R² {fit.r2:.4f}; {describe(model)}",
        )
        print(f"\nfitted curve: {save_figure(fig, out / f'fitted_curve_{args.split}.png')}")
        return
    evaluation = evaluate(model, x, y)
    print(
        f"{args.split} accuracy {100 * evaluation.accuracy:.2f}% "
        f"({evaluation.n_errors} errors in {len(y)} images)\n"
    )
    print(format_table(evaluation.per_class))
    print("\nmost confused (true -> predicted):")
    print(format_table(evaluation.confused_pairs))
    fig = plot_confusion_matrix(
        evaluation.confusion, model.meta["class_names"], caption=describe(model)
    )
    path = save_figure(fig, out / f"confusion_matrix_{args.split}.png")
    print(f"\nconfusion matrix: {path}")


def command_evaluate_ensemble(args):
    from core.experiments.ensemble import ensemble_dir, ensemble_table, load_members, member_probs
    from core.learn.eval import format_table
    from core.plots import plot_confusion_matrix, save_figure
    from core.report import describe, evaluation_of, load_test_set

    models = load_members(args.params)
    out = args.out if args.out is not None else ensemble_dir(args.params)
    _, y, raw = load_test_set(models[0].meta, args.data_dir, args.split)
    for path, model in zip(args.params, models, strict=True):
        print(f"{path}: {describe(model)}")
    probs = member_probs(models, raw)
    table = ensemble_table(args.params, probs, y)
    print(f"\n{args.split} accuracy of the ensemble of {len(models)} models (softmax "
          f"probabilities averaged) and of each member, on {len(y)} images:")  # fmt: skip
    print(format_table(table))
    evaluation = evaluation_of(probs.mean(axis=0), y, models[0].meta["class_names"])
    print(f"\nthe ensemble, per class:\n{format_table(evaluation.per_class)}")
    print("\nmost confused (true -> predicted):")
    print(format_table(evaluation.confused_pairs))
    caption = f"ensemble of {len(models)} models"
    fig = plot_confusion_matrix(
        evaluation.confusion, models[0].meta["class_names"], caption=caption
    )
    print(f"\nconfusion matrix: {save_figure(fig, out / f'confusion_matrix_{args.split}.png')}")


def command_predict(args):
    if len(args.params) > 1:
        return command_predict_ensemble(args)
    args.params = args.params[0]
    from core.learn.eval import predict_proba, top_k
    from core.report import check_digit_model, model_inputs
    from data.digit_image import load_digit_image, prepared_path, to_png
    from model.params_io import load_model

    model = load_model(args.params)
    check_digit_model(model.meta, args.params, "predict")
    names = model.meta["class_names"]
    for path in args.images:
        image = load_digit_image(path)
        probs = predict_proba(
            model.params, model.blueprint, model_inputs(image[None, None], model.meta, args.params)
        )
        classes, p = top_k(probs, 3)
        ranked = ", ".join(
            f"{names[c]} ({100 * q:.1f}%)" for c, q in zip(classes[0], p[0], strict=True)
        )
        print(f"{path}: {names[classes[0, 0]]}   top 3: {ranked}")
        if args.show:
            print(f"  prepared image: {to_png(image, prepared_path(path))}")


def command_predict_ensemble(args):
    from core.experiments.ensemble import load_members, member_probs
    from core.learn.eval import top_k
    from core.report import check_digit_model
    from data.digit_image import load_digit_image, prepared_path, to_png

    models = load_members(args.params)
    for path, model in zip(args.params, models, strict=True):
        check_digit_model(model.meta, path, "predict")
    names = models[0].meta["class_names"]
    for path in args.images:
        image = load_digit_image(path)
        probs = member_probs(models, image[None, None])  # (M, 1, K)
        classes, p = top_k(probs.mean(axis=0), 3)
        ranked = ", ".join(
            f"{names[c]} ({100 * q:.1f}%)" for c, q in zip(classes[0], p[0], strict=True)
        )
        print(f"{path}: {names[classes[0, 0]]}   top 3 of the ensemble: {ranked}")
        each = ", ".join(
            f"{file.name} {names[q.argmax()]} ({100 * q.max():.1f}%)"
            for file, q in zip(args.params, probs[:, 0], strict=True)
        )
        print(f"  members: {each}")
        if args.show:
            print(f"  prepared image: {to_png(image, prepared_path(path))}")


def command_quantize(args):
    from core.compress.quantize import quantize_file

    started = time.perf_counter()
    done = quantize_file(args.params, args.out, args.calibration, args.data_dir, args.overwrite)
    before, after = os.path.getsize(args.params), os.path.getsize(done.path)
    print(
        f"{args.params} -> {done.path}: {len(done.layers)} layers in int8 "
        f"({', '.join(done.layers)}), {len(done.folded)} batch norms folded into them, "
        f"input scales from {done.calibration} training images"
    )
    print(
        f"file size {before:,} -> {after:,} bytes ({100 * after / before:.1f}%), "
        f"{time.perf_counter() - started:.1f} s; "
        f"evaluate it with: python main.py evaluate --params {done.path}"
    )


def command_summary(args):
    from data.errors import UserError
    from model.blueprints import load_blueprint
    from model.params_io import load_model
    from model.summary import format_summary

    try:
        shape = tuple(int(s) for s in args.input_shape.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise UserError(f"--input-shape must look like 1x28x28 or 2, got {args.input_shape!r}")
    if args.params is not None:
        model = load_model(args.params)
        shape = tuple(model.meta["input_shape"])
        print(format_summary(model.blueprint, shape, str(args.params), model.params))
        if pruned := model.meta.get("pruned"):
            print(f"pruned to sparsity {pruned['sparsity']:g}: {pruned['zero_weights']:,} of "
                  f"{pruned['prunable_weights']:,} conv and fc weights are zero")  # fmt: skip
        return
    name, blueprint = load_blueprint(args.arch, args.classes)
    print(format_summary(blueprint, shape, name))


def command_prune(args):
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
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    minutes = (time.perf_counter() - started) / 60
    print(f"{minutes:.1f} min in all; files in {out}: prune.csv, prune.png, "
          f"{', '.join(f'sparsity_{s:g}.npz' for s in table['sparsity'])}")  # fmt: skip


def command_serve(args):
    from core.serve.live import LiveModel
    from core.serve.server import LiveServer
    from data.errors import UserError

    live = LiveModel(args.params)
    try:
        server = LiveServer((args.host, args.port), live)
    except OSError as err:  # port taken, unknown host, no permission
        raise UserError(
            f"cannot listen on {args.host}:{args.port} ({err.strerror or err}); "
            "choose another --port or --host"
        ) from err
    print(f"serving {args.params} at {server.url}  (Ctrl-C stops)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: anyone who can reach {args.host} can use the page", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()


def command_gradcheck(args):
    from core.learn.gradcheck import gradient_report

    report = gradient_report()
    print(report.to_string(index=False))
    failed = int((~report["ok"]).sum())
    print(
        f"\n{len(report) - failed} of {len(report)} checks passed (relative error < 1e-7 in float64)"
    )
    return 1 if failed else 0


def command_explain(args):
    from core.inside.runs import run_explain

    run_explain(args.params, args.images, args.method, args.layer, args.seed, args.limit,
                args.data_dir, args.out)  # fmt: skip


def command_visualize(args):
    from core.inside.runs import run_visualize

    run_visualize(args.params, args.classes, args.layer, args.seed, args.limit, args.data_dir,
                  args.out)  # fmt: skip


def command_attack(args):
    from core.inside.attack import AttackSettings
    from core.inside.runs import run_attack

    settings = AttackSettings(args.method, args.steps, args.step_size, args.seed)
    run_attack(args.params, args.eps, settings, args.limit, args.data_dir, args.out)


def command_sweep(args):
    from core.experiments.sweep import run_sweep

    run_sweep(args)


COMMANDS = {
    "train": command_train,
    "evaluate": command_evaluate,
    "predict": command_predict,
    "quantize": command_quantize,
    "summary": command_summary,
    "prune": command_prune,
    "gradcheck": command_gradcheck,
    "serve": command_serve,
    "sweep": command_sweep,
    "explain": command_explain,
    "attack": command_attack,
    "visualize": command_visualize,
}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # the main job: train the reference model with the default recipe
        args = parser.parse_args([*(sys.argv[1:] if argv is None else argv), "train"])
    from data.errors import UserError
    from model.shards import set_threads

    try:
        if args.threads:
            set_threads(args.threads)
        return COMMANDS[args.command](args) or 0
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
        return 130


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files; no window
    sys.exit(main())
