"""``python main.py predict``: the top 3 classes of pictures of handwritten digits, by one
model or by the ensemble of several."""

from pathlib import Path

from core.commands.command import Command
from core.commands.options import add_params


def add_arguments(parser):
    parser.add_argument("images", nargs="+", type=Path, help="PNG or JPEG pictures, one digit each")
    add_params(parser, "the model file (default: best_params.npz); several files: their "
               "ensemble (softmax probabilities averaged)", several=True)  # fmt: skip
    parser.add_argument(
        "--show", action="store_true", help="save each prepared 28x28 image beside its picture"
    )


def run(args):
    if len(args.params) > 1:
        return run_ensemble(args)
    args.params = args.params[0]
    from core.learn.eval import predict_scores, softmax, top_k
    from core.learn.model_file import load_model
    from core.learn.ood import verdict
    from core.report import check_digit_model, model_inputs
    from data.digit_image import load_digit_image, prepared_path, to_png

    model = load_model(args.params)
    check_digit_model(model.meta, args.params, "predict")
    names = model.meta["class_names"]
    for path in args.images:
        image = load_digit_image(path)
        logits = predict_scores(
            model.params, model.blueprint, model_inputs(image[None, None], model.meta, args.params)
        )
        probs = softmax(logits)
        classes, p = top_k(probs, 3)
        ranked = ", ".join(
            f"{names[c]} ({100 * q:.1f}%)" for c, q in zip(classes[0], p[0], strict=True)
        )
        if words := verdict(model, logits[0], image, args.params):
            print(f"{path}: {words}   its top 3 all the same: {ranked}")
        else:
            print(f"{path}: {names[classes[0, 0]]}   top 3: {ranked}")
        if args.show:
            print(f"  prepared image: {to_png(image, prepared_path(path))}")


def run_ensemble(args):
    """predict with several model files: the ensemble's top 3, and each member's class."""
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


COMMAND = Command("predict", "classify pictures of handwritten digits", add_arguments, run)
