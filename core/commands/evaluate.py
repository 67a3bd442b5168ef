"""``python main.py evaluate``: the accuracy, per-class table and confusion matrix of a saved
model, or of the ensemble of several; a regression model's MSE, R^2 and fitted curve."""

from core.commands.command import Command
from core.commands.options import add_data_dir, add_device, add_out, add_params, add_tta


def add_arguments(parser):
    add_params(parser, "the model file (default: best_params.npz); several files: their "
               "ensemble (softmax probabilities averaged), with each member's accuracy",
               several=True)  # fmt: skip
    add_data_dir(parser)
    parser.add_argument(
        "--split",
        choices=["test", "train"],
        default="test",
        help="the test set, or all the training images (default: %(default)s)",
    )
    add_tta(parser)
    add_device(parser)
    add_out(parser, "where the figure goes (default: runs/evaluate/<model file name>-<hash of "
            "its path>, one folder per model file)")  # fmt: skip


def run(args):
    if len(args.params) > 1:
        return run_ensemble(args)
    args.params = args.params[0]
    from core.learn.eval import format_table
    from core.learn.model_file import load_model
    from core.plots import plot_confusion_matrix, save_figure
    from core.report import (
        check_tta,
        evaluate,
        evaluation_dir,
        is_regression,
        load_test_set,
        model_caption,
    )

    model = load_model(args.params)
    if args.tta is not None:  # refused before the test set is read
        check_tta(model.meta, args.tta, args.params)
    out = args.out if args.out is not None else evaluation_dir(args.params)
    x, y, raw = load_test_set(model.meta, args.data_dir, args.split)
    print(f"{args.params}: {model_caption(model)}")
    if is_regression(model.meta):  # no classes: the error and the fitted curve
        return show_regression(args, model, x, y, raw, out)
    evaluation = evaluate(model, x, y, args.tta)
    print(
        f"{args.split} accuracy {100 * evaluation.accuracy:.2f}% "
        f"({evaluation.n_errors} errors in {len(y)} images){tta_note(args.tta)}\n"
    )
    print(format_table(evaluation.per_class))
    print("\nmost confused (true -> predicted):")
    print(format_table(evaluation.confused_pairs))
    fig = plot_confusion_matrix(
        evaluation.confusion, model.meta["class_names"], caption=model_caption(model)
    )
    path = save_figure(fig, out / f"confusion_matrix_{args.split}.png")
    print(f"\nconfusion matrix: {path}")


def tta_note(tta):
    """What the accuracy line adds for ``--tta``: how many views were averaged, or ""."""
    from data.augment import TTA_VIEWS

    return "" if tta is None else f", --tta {tta}: the mean of {len(TTA_VIEWS[tta])} views"


def show_regression(args, model, x, y, raw, out):
    """A regression model's MSE and R^2 on the split, and its fitted curve in ``out``."""
    from core.plots import plot_fitted_curve, save_figure
    from core.report import evaluate_regression, model_caption, model_inputs

    fit = evaluate_regression(model, x, y)
    print(f"{args.split} MSE {fit.mse:.4f}, R^2 {fit.r2:.4f} ({len(y)} points)")
    fig = plot_fitted_curve(
        None,
        model.params,
        model.blueprint,
        raw,
        y,
        lambda points: model_inputs(points, model.meta),
        caption=f"{args.split} points: MSE {fit.mse:.4f}, R² {fit.r2:.4f}; {model_caption(model)}",
    )
    print(f"\nfitted curve: {save_figure(fig, out / f'fitted_curve_{args.split}.png')}")


def run_ensemble(args):
    """evaluate of several model files: their ensemble, and each member."""
    from core.experiments.ensemble import ensemble_table, load_members, member_probs
    from core.learn.eval import format_table
    from core.plots import plot_confusion_matrix, save_figure
    from core.report import check_tta, evaluation_dir, evaluation_of, load_test_set, model_caption

    models = load_members(args.params)
    if args.tta is not None:  # refused before the test set is read
        for path, model in zip(args.params, models, strict=True):
            check_tta(model.meta, args.tta, path)
    out = args.out if args.out is not None else evaluation_dir(args.params)
    _, y, raw = load_test_set(models[0].meta, args.data_dir, args.split)
    for path, model in zip(args.params, models, strict=True):
        print(f"{path}: {model_caption(model)}")
    probs = member_probs(models, raw, tta=args.tta)
    table = ensemble_table(args.params, probs, y)
    print(f"\n{args.split} accuracy of the ensemble of {len(models)} models (softmax "
          f"probabilities averaged) and of each member, on {len(y)} "
          f"images{tta_note(args.tta)}:")  # fmt: skip
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


COMMAND = Command(
    "evaluate",
    "accuracy, per-class table and confusion matrix of a saved model (a regression model: "
    "MSE, R^2 and its fitted curve)",
    add_arguments,
    run,
    description="Evaluate a saved model on its dataset's test set: the accuracy, a table of "
    "each class's precision and recall, and the confusion matrix as a figure. Several model "
    "files: their ensemble (the mean of their softmax probabilities) and each member's "
    "accuracy. A regression model: its MSE, R^2 and the fitted curve.",
)
