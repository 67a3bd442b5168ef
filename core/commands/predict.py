"""``python main.py predict``: the top 3 classes of pictures of handwritten digits, by one
model or by the ensemble of several."""

from pathlib import Path

from core.commands.command import Command
from core.commands.options import SHIPPED_PARAMS, add_device, add_params, add_tta

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def add_arguments(parser):
    parser.add_argument("images", nargs="*", type=Path, metavar="PICTURE",
                        help="PNG or JPEG pictures, one digit each, or folders of them")  # fmt: skip
    add_params(parser, "the model file (default: best_params.npz); several files: their "
               "ensemble (softmax probabilities averaged)", several=True)  # fmt: skip
    parser.add_argument(
        "--show", action="store_true", help="save each prepared 28x28 image beside its picture"
    )
    add_tta(parser)
    add_device(parser)


def pictures(args):
    """The pictures to classify: the PICTURE arguments, each folder read as its pictures.

    ``--params model.npz seven.png`` gives the picture to --params (it takes one or more
    files): what follows the model files (.npz) there is taken as the pictures.
    """
    from data.errors import UserError

    given = list(args.images)
    if not given:
        first = next((i for i, p in enumerate(args.params) if p.suffix != ".npz"), None)
        if first is not None:
            args.params, given = args.params[:first], args.params[first:]
    if not given:
        raise UserError("predict: give one or more pictures: python main.py predict PICTURE...")
    found = []
    for path in given:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES)
            if not inside:
                raise UserError(f"{path}: a folder with no pictures ({', '.join(PICTURE_SUFFIXES)})")
            found += inside
        else:
            found.append(path)
    return found


def run(args):
    args.images = pictures(args)
    if not args.params:
        args.params = [SHIPPED_PARAMS]
    if len(args.params) > 1:
        return run_ensemble(args)
    args.params = args.params[0]
    from core.learn.eval import predict_scores, softmax, top_k
    from core.learn.model_file import load_model
    from core.learn.ood import verdict
    from core.report import check_digit_model, check_tta, model_inputs, model_proba
    from data.digit_image import load_digit_image, prepared_path, to_png

    model = load_model(args.params)
    check_digit_model(model.meta, args.params, "predict")
    if args.tta is not None:
        check_tta(model.meta, args.tta, args.params)
    names = model.meta["class_names"]
    for path in args.images:
        image = load_digit_image(path)
        inputs = model_inputs(image[None, None], model.meta, args.params)
        logits = predict_scores(model.params, model.blueprint, inputs)  # the not-a-digit check's
        probs = softmax(logits) if args.tta is None else model_proba(model, inputs, args.tta)
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
    from core.experiments.ensemble import load_members, member_names, member_probs
    from core.learn.eval import top_k
    from core.report import check_digit_model, check_tta
    from data.digit_image import load_digit_image, prepared_path, to_png

    models = load_members(args.params)
    for path, model in zip(args.params, models, strict=True):
        check_digit_model(model.meta, path, "predict")
        if args.tta is not None:
            check_tta(model.meta, args.tta, path)
    names = models[0].meta["class_names"]
    for path in args.images:
        image = load_digit_image(path)
        probs = member_probs(models, image[None, None], tta=args.tta)  # (M, 1, K)
        classes, p = top_k(probs.mean(axis=0), 3)
        ranked = ", ".join(
            f"{names[c]} ({100 * q:.1f}%)" for c, q in zip(classes[0], p[0], strict=True)
        )
        print(f"{path}: {names[classes[0, 0]]}   top 3 of the ensemble: {ranked}")
        each = ", ".join(
            f"{member} {names[q.argmax()]} ({100 * q.max():.1f}%)"
            for member, q in zip(member_names(args.params), probs[:, 0], strict=True)
        )
        print(f"  members: {each}")
        if args.show:
            print(f"  prepared image: {to_png(image, prepared_path(path))}")


COMMAND = Command(
    "predict",
    "classify pictures of handwritten digits",
    add_arguments,
    run,
    description="The top 3 classes of each picture of a handwritten digit (PNG, JPEG, ...: "
    "dark ink on light paper or light on dark; a folder: every picture in it). "
    "Each picture is prepared as MNIST's digits were: cropped to the digit, scaled to 20x20 "
    "and centred by its centre of mass in 28x28 (--show saves what the model sees).",
)
