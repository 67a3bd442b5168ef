"""How well the not-a-digit check (core/learn/ood.py) tells digits from other pictures.

    python benchmarks/bench_not_a_digit.py                 # the table, for best_params.npz
    python benchmarks/bench_not_a_digit.py --write         # ... and save its record in the file

Calibrates the model's record on its own validation split (or uses the one in the file with
--use-saved), then prints, for each kind of picture, the percentage flagged "not a digit"
by the energy score, by the distance of the pixel statistics, and by the two together (the
check). Every picture goes through data/digit_image.py as a user's picture does; MNIST test
digits are shown both as they are and drawn (dark on white, 10 times larger).
"""

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.learn import ood  # noqa: E402
from core.learn.config import TrainConfig  # noqa: E402
from core.learn.eval import predict_scores  # noqa: E402
from core.learn.model_file import load_model  # noqa: E402
from data import load_dataset  # noqa: E402
from data.digit_image import digit_image_from_bytes  # noqa: E402
from data.errors import UserError  # noqa: E402
from model.params_io import save_model  # noqa: E402

N = 300  # pictures of each made-up kind


def prepared(arrays):
    """(pictures (N, 1, 28, 28) uint8 that data/digit_image.py prepares, count it refuses)."""
    out, refused = [], 0
    for a in arrays:
        buffer = io.BytesIO()
        Image.fromarray(a).save(buffer, format="PNG")
        try:
            out.append(digit_image_from_bytes(buffer.getvalue(), "a picture"))
        except UserError:
            refused += 1
    return np.array(out, dtype=np.uint8).reshape(-1, 1, 28, 28), refused


def made_up(rng):
    """{kind: list of (H, W) uint8 pictures} that are no digits."""
    yy, xx = np.mgrid[0:200, 0:200]

    def gradient():
        angle = rng.uniform(0, 2 * np.pi)
        v = np.cos(angle) * xx + np.sin(angle) * yy
        return (255 * (v - v.min()) / np.ptp(v)).astype(np.uint8)

    def stroke():
        picture = Image.new("L", (200, 200), 255)
        ImageDraw.Draw(picture).line(list(rng.uniform(20, 180, 4)), fill=0,
                                     width=int(rng.integers(3, 20)))  # fmt: skip
        return np.asarray(picture)

    def pixel():
        a = np.full((100, 100), 255, np.uint8)
        a[rng.integers(0, 100), rng.integers(0, 100)] = 0
        return a

    noise = [rng.integers(0, 256, (280, 280)).astype(np.uint8) if i % 2 else
             np.clip(128 + rng.normal(0, rng.uniform(10, 80), (200, 200)), 0, 255).astype(np.uint8)
             for i in range(N)]  # fmt: skip
    return {
        "grey noise": noise,
        "smooth gradients": [gradient() for _ in range(N)],
        "single strokes": [stroke() for _ in range(N)],
        "one dark pixel on white": [pixel() for _ in range(100)],
        "blank pictures, one grey level": [np.full((100, 100), v, np.uint8) for v in range(0, 256, 5)],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("best_params.npz"))
    parser.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--write", action="store_true", help="save the record in the file")
    parser.add_argument("--use-saved", action="store_true", help="the file's own record")
    args = parser.parse_args()
    started = time.perf_counter()
    model = load_model(args.params)
    config = TrainConfig(**model.meta["config"])

    def logits_of(pictures):
        return predict_scores(model.params, model.blueprint, model.inputs(pictures / np.float32(255)))

    record = model.meta["ood"] if args.use_saved else ood.calibrate(model, config, logits_of)
    print(f"record: validation images {record['validation_images']}, energy threshold "
          f"{record['energy_threshold']:.3f}, distance threshold {record['distance_threshold']:.2f}")  # fmt: skip
    test = load_dataset("mnist").x_test
    kinds = {"MNIST test digits, as PNG files": (ood.drawn(test, scale=1), 0),
             "MNIST test digits, drawn": (ood.drawn(test[:2000]), 0)}  # fmt: skip
    kinds |= {kind: prepared(a) for kind, a in made_up(np.random.default_rng(5)).items()}
    fashion = load_dataset("fashion-mnist", args.fashion_dir).x_test[:2000, 0]
    kinds["Fashion-MNIST test pictures"] = prepared(list(fashion))
    print("| pictures | n | refused as blank | energy | pixel statistics | the check |")
    print("|---|---|---|---|---|---|")
    for kind, (pictures, refused) in kinds.items():
        if len(pictures) == 0:
            print(f"| {kind} | {refused} | {refused} | - | - | 100% (refused) |")
            continue
        logits = logits_of(pictures)
        by_energy = ood.energy(logits) > record["energy_threshold"]
        by_stats = ood.distance(record, pictures) > record["distance_threshold"]
        print(f"| {kind} | {len(pictures) + refused} | {refused} | {100 * by_energy.mean():.1f}% | "
              f"{100 * by_stats.mean():.1f}% | {100 * (by_energy | by_stats).mean():.1f}% |")  # fmt: skip
    if args.write:
        meta = {key: v for key, v in model.meta.items() if key != "format_version"}
        save_model(args.params, model.params, model.blueprint, {**meta, "ood": record})
        print(f"record saved in {args.params}")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
