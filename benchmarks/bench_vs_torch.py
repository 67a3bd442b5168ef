"""numpy-cnn against PyTorch on this CPU, side by side, in alternating fresh processes.

    python3 -m venv .torchenv && .torchenv/bin/pip install torch==2.13.0 numpy   # once
    python benchmarks/bench_vs_torch.py --torch-python .torchenv/bin/python
    python benchmarks/bench_vs_torch.py --torch-python .torchenv/bin/python \\
        --arch minivgg --rounds 5 --epoch               # also a real one-epoch training run

For each architecture and round it runs benchmarks/bench_train.py (numpy-cnn) and
../shared/anchors/torch_blueprint.py (the same blueprint built in PyTorch, which
lives in its own virtual environment and is never a dependency of this project),
one after the other, each in a fresh process, at the same batch size and thread
count. It prints the CPU model, BLAS's measured peak on this machine (a large
float32 matrix product on the same number of threads), and per architecture:
  - training images/s of both (forward, loss, backward, Adam) and the time ratio
    numpy-cnn / PyTorch (below 1.0: numpy-cnn is faster), median and range of the
    rounds' ratios, each round's pair measured back to back;
  - the fraction of BLAS's peak numpy-cnn's training reaches (multiply-adds of the
    convolutions and fully connected layers, forward and both gradients);
  - inference images/s at batch 1000 of both and their ratio (above 1.0: numpy-cnn
    is faster);
  - numpy-cnn's peak resident memory (the benchmark process: training, then inference).
With --epoch it also trains one real epoch (python main.py train: data feeding,
augmentation and validation included) and compares it with steps x step time.
A figure, not a test: nothing here asserts a time. The machine's speed drifts, so
only ratios measured together mean anything.
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.blueprints import load_blueprint  # noqa: E402
from model.shapes import trace_shapes  # noqa: E402

ANCHOR = ROOT.parent / "shared" / "anchors" / "torch_blueprint.py"
INPUT_SHAPE = (1, 28, 28)


def cpu_model():
    """The CPU's model name with its family and model numbers (a virtual machine may name
    only "AMD EPYC"; the numbers tell its generation), from /proc/cpuinfo or platform."""
    try:
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (
                line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines()
            )
            if key.strip() in ("model name", "cpu family", "model")
        )
    except OSError:
        fields = {}
    if "model name" not in fields:
        return platform.processor() or "unknown CPU"
    numbers = f" (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    return fields["model name"] + numbers


def blas_peak_gflops(threads, size=2048, repeats=5):
    """GFLOP/s of a float32 size x size matrix product on ``threads`` BLAS threads (best of
    ``repeats``): what this machine's BLAS reaches on an ideal product."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b
        best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(task):
    t0 = time.perf_counter()
    task()
    return time.perf_counter() - t0


def training_flops(blueprint):
    """Floating-point operations of one training example: the multiply-adds (2 flops each) of
    every conv and fc layer, forward, weight gradient and input gradient (none for the first
    layer, whose input is the data). Batch norm, pooling and activations are not counted."""
    total, first = 0, True
    for row in trace_shapes(blueprint, INPUT_SHAPE):
        spec = row.spec
        if spec["type"] == "conv":
            f, ho, wo = row.out_shape
            c = row.in_shape[0] // spec["groups"]  # input channels each filter sees
            kh, kw = row.param_shapes[f"{spec['name']}.W"][2:]
            macs = f * c * kh * kw * ho * wo
        elif spec["type"] == "fc":
            macs = math.prod(row.in_shape) * spec["units"]
        else:
            continue
        total += 2 * macs * (2 if first else 3)
        first = False
    return total


def run_json(command, env=None):
    """The last line of a command's output, parsed as JSON (the command's one result)."""
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        sys.exit(f"failed: {' '.join(map(str, command))}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def numpy_side(arch, args):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        subprocess.run(
            [sys.executable, "benchmarks/bench_train.py", "--arch", arch, "--batch",
             str(args.batch), "--steps", str(args.steps), "--threads", str(args.threads),
             "--no-layers", "--json", str(out)],
            check=True, capture_output=True, cwd=ROOT,
        )  # fmt: skip
        figures = json.loads(out.read_text())
    train, infer = figures["results"]
    return {
        "train_images_per_s": train["train_images_per_s"],
        "inference_images_per_s": infer["inference_images_per_s"],
        "peak_rss_mb": figures["peak_rss_mb"],
    }


def torch_side(blueprint_file, args):
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    return run_json(
        [args.torch_python, str(ANCHOR), str(blueprint_file), "--threads", str(args.threads),
         "--batch", str(args.batch), "--steps", str(args.steps), "--json"],
        env=env,
    )  # fmt: skip


def epoch_check(arch, args, step_images_per_s):
    """One real training epoch (main.py train) against steps x step time."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "main.py", "--threads", str(args.threads), "train", "--arch",
                   arch, "--epochs", "1", "--batch-size", str(args.batch), "--augment",
                   "--out", str(Path(tmp) / "run")]  # fmt: skip
        command_s = _seconds(lambda: subprocess.run(command, check=True, capture_output=True,
                                                     cwd=ROOT))  # fmt: skip
        log = pd.read_csv(Path(tmp) / "run" / "log.csv")
    images = 55000  # MNIST's training split: 60,000 less the 5,000 of validation
    steps = math.ceil(images / args.batch)
    batches_s = float(log["seconds"].iloc[0])  # the epoch's batches: feeding, augmentation
    predicted = steps * args.batch / step_images_per_s
    return batches_s, command_s, predicted


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--torch-python", required=True, help="python of the PyTorch venv")
    parser.add_argument("--arch", nargs="+", default=["minivgg", "minivgg_bn_dropout", "resnet"])
    parser.add_argument("--rounds", type=int, default=3, help="alternations per architecture")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per process")
    parser.add_argument("--epoch", action="store_true", help="also time a real training epoch")
    args = parser.parse_args()
    if not ANCHOR.exists():
        sys.exit(f"{ANCHOR} is missing: the PyTorch anchor lives in ../shared/anchors/")

    peak = blas_peak_gflops(args.threads)
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores; {args.threads} threads; batch "
          f"{args.batch}; BLAS peak (float32 2048x2048 product, {args.threads} threads): "
          f"{peak:.0f} GFLOP/s")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            _, blueprint = load_blueprint(arch)
            blueprint_file = Path(tmp) / f"{arch}.json"
            blueprint_file.write_text(json.dumps(blueprint))
            rounds = []
            for _ in range(args.rounds):
                rounds.append((numpy_side(arch, args), torch_side(blueprint_file, args)))
            ours = pd.DataFrame([n for n, _ in rounds])
            theirs = pd.DataFrame([t for _, t in rounds])
            time_ratio = theirs["train_images_per_s"] / ours["train_images_per_s"]
            speed_ratio = ours["inference_images_per_s"] / theirs["inference_images_per_s"]
            flops = training_flops(blueprint)
            row = {
                "arch": arch,
                "numpy_train": ours["train_images_per_s"].median(),
                "torch_train": theirs["train_images_per_s"].median(),
                "train_time_ratio": time_ratio.median(),
                "ratio_range": f"{time_ratio.min():.2f}-{time_ratio.max():.2f}",
                "peak_fraction": flops * ours["train_images_per_s"].median() / (peak * 1e9),
                "numpy_infer": ours["inference_images_per_s"].median(),
                "torch_infer": theirs["inference_images_per_s"].median(),
                "infer_speed_ratio": speed_ratio.median(),
                "numpy_peak_rss_mb": ours["peak_rss_mb"].max(),
            }
            rows.append(row)
            print(f"\n{arch}: training {row['numpy_train']:.0f} images/s (PyTorch "
                  f"{row['torch_train']:.0f}): time ratio {row['train_time_ratio']:.2f} "
                  f"(rounds {row['ratio_range']}); {100 * row['peak_fraction']:.0f}% of BLAS "
                  f"peak ({flops / 1e6:.1f} MFLOP per training image); inference "
                  f"{row['numpy_infer']:.0f} images/s (PyTorch {row['torch_infer']:.0f}): "
                  f"{row['infer_speed_ratio']:.2f}x PyTorch's speed; peak memory "
                  f"{row['numpy_peak_rss_mb']:.0f} MB")  # fmt: skip
            if args.epoch:
                batches_s, command_s, predicted = epoch_check(arch, args, row["numpy_train"])
                validation_s = 5000 / row["numpy_infer"]
                epoch_s = batches_s + validation_s
                print(f"  one real epoch (main.py train --augment): {batches_s:.1f} s for its "
                      f"batches (data feeding and augmentation included) + {validation_s:.1f} s "
                      f"of validation (5,000 images at the inference speed above) = "
                      f"{epoch_s:.1f} s, against {predicted:.1f} s of steps x step time: "
                      f"{100 * (epoch_s / predicted - 1):+.0f}%; the whole command, start, "
                      f"loading and figures included: {command_s:.1f} s")  # fmt: skip
    print(
        f"\n(time ratio: numpy-cnn's seconds per training step / PyTorch's, median of "
        f"{args.rounds} alternating rounds; inference: numpy-cnn's images/s / PyTorch's)"
    )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
