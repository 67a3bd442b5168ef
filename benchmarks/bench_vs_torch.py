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
float32 matrix product on the same number of threads), how that peak and an
elementwise pass over memory scale from one thread to all, and per architecture:
  - training images/s of both (forward, loss, backward, Adam) and the time ratio
    numpy-cnn / PyTorch (below 1.0: numpy-cnn is faster), median and range of the
    rounds' ratios, each round's pair measured back to back;
  - the fraction of BLAS's peak numpy-cnn's training reaches (multiply-adds of the
    convolutions and fully connected layers, forward and both gradients);
  - inference images/s at batch 1000 of both and their ratio (above 1.0: numpy-cnn
    is faster);
  - numpy-cnn's peak resident memory: of the training steps, and of the whole benchmark
    process (training, then inference at batch 1000).
With --epoch it also trains one real epoch (python main.py train --augment, in a
fresh process: data feeding, augmentation and validation included) and compares it
with the time its own training steps took inside it, and with steps x step time.
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
from model.walk import KINDS  # noqa: E402

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


def memory_pass_gb_per_s(threads, megabytes=1.6, repeats=50):
    """GB/s of an elementwise pass (read one float32 array, write another) over arrays of
    ``megabytes``, each of ``threads`` threads on its own pair: what a batch norm, ReLU or
    im2col pass over one shard's activations (batch 64 on 2 threads: 32 x 16 x 28 x 28
    floats, 1.6 MB) can reach. Best of 7."""
    from concurrent.futures import ThreadPoolExecutor

    n = int(megabytes * 1e6) // 4
    pairs = [(np.ones(n, np.float32), np.empty(n, np.float32)) for _ in range(threads)]

    def passes(pair):
        for _ in range(repeats):
            np.multiply(pair[0], 1.5, out=pair[1])

    with ThreadPoolExecutor(threads) as pool:
        best = min(_seconds(lambda: list(pool.map(passes, pairs))) for _ in range(7))
    return threads * repeats * 2 * n * 4 / best / 1e9


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
        kind = KINDS[row.spec["type"]]
        if not kind.weighted:
            continue
        w_shape = row.param_shapes[f"{row.spec['name']}.W"]
        # each output value is a sum over one output channel's weights (a conv's: C/g*KH*KW)
        macs = math.prod(row.out_shape) * math.prod(w_shape) // w_shape[kind.out_axis]
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
        "train_peak_rss_mb": train["peak_rss_mb_so_far"],  # before inference ran
        "peak_rss_mb": figures["peak_rss_mb"],
    }


def torch_side(blueprint_file, args):
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    return run_json(
        [args.torch_python, str(ANCHOR), str(blueprint_file), "--threads", str(args.threads),
         "--batch", str(args.batch), "--steps", str(args.steps), "--json"],
        env=env,
    )  # fmt: skip


def one_epoch(arch, threads, batch):
    """Train one real epoch, as ``python main.py --threads T train --arch A --epochs 1
    --batch-size B --augment`` does, in this process, timing its training steps and its
    validation from inside (core.learn.train's own functions, wrapped). Prints the figures as JSON."""
    import core.learn.train
    import main as cli
    from model.shards import set_threads

    set_threads(threads)
    inside = {"train_step": 0.0, "validate": 0.0, "steps": 0}

    def timed(name):
        real = getattr(core.learn.train, name)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                inside[name] += time.perf_counter() - t0
                inside["steps"] += name == "train_step"

        setattr(core.learn.train, name, wrapper)

    timed("train_step")
    timed("validate")
    options = ["train", "--arch", arch, "--epochs", "1", "--batch-size", str(batch), "--augment"]
    config = cli.train_config(cli.build_parser().parse_args(options))
    with tempfile.TemporaryDirectory() as tmp:
        core.learn.train.train(config, Path(tmp) / "run")  # silent: the default Report
        batches_s = float(pd.read_csv(Path(tmp) / "run" / "log.csv")["seconds"].iloc[0])
    print(json.dumps({"batches_s": batches_s, **inside}))


def epoch_check(arch, args):
    """one_epoch in a fresh process: its figures, and the whole command's seconds."""
    command = [sys.executable, __file__, "--one-epoch", arch, "--threads", str(args.threads),
               "--batch", str(args.batch), "--torch-python", args.torch_python]  # fmt: skip
    t0 = time.perf_counter()
    figures = run_json(command)
    return figures, time.perf_counter() - t0


def parse_args():
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
    parser.add_argument("--one-epoch", metavar="ARCH", help=argparse.SUPPRESS)  # epoch_check's
    return parser.parse_args()


def compare(arch, blueprint, blueprint_file, args, peak):
    """Alternating rounds of both sides for one architecture; prints and returns its row."""
    rounds = [
        (numpy_side(arch, args), torch_side(blueprint_file, args)) for _ in range(args.rounds)
    ]
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
        "numpy_train_peak_rss_mb": ours["train_peak_rss_mb"].max(),
        "numpy_peak_rss_mb": ours["peak_rss_mb"].max(),
    }
    print(f"\n{arch}: training {row['numpy_train']:.0f} images/s (PyTorch "
          f"{row['torch_train']:.0f}): time ratio {row['train_time_ratio']:.2f} "
          f"(rounds {row['ratio_range']}); {100 * row['peak_fraction']:.0f}% of BLAS "
          f"peak ({flops / 1e6:.1f} MFLOP per training image); inference "
          f"{row['numpy_infer']:.0f} images/s (PyTorch {row['torch_infer']:.0f}): "
          f"{row['infer_speed_ratio']:.2f}x PyTorch's speed; peak memory "
          f"{row['numpy_train_peak_rss_mb']:.0f} MB training, "
          f"{row['numpy_peak_rss_mb']:.0f} MB with inference at batch 1000")  # fmt: skip
    return row


def print_epoch_check(arch, args, row):
    """Time one real epoch of ``arch`` and print where its time goes."""
    figures, command_s = epoch_check(arch, args)
    epoch_s = figures["batches_s"] + figures["validate"]
    step_s = figures["train_step"] / figures["steps"]
    predicted = figures["steps"] * args.batch / row["numpy_train"]
    print(f"  one real epoch (main.py train --augment, {figures['steps']} steps): "
          f"{figures['batches_s']:.1f} s for its batches + {figures['validate']:.1f} "
          f"s of validation = {epoch_s:.1f} s; its training steps alone took "
          f"{figures['train_step']:.1f} s ({1000 * step_s:.1f} ms each): data "
          f"feeding, augmentation and validation add "
          f"{100 * (epoch_s / figures['train_step'] - 1):+.0f}%. Against steps x the "
          f"step time above ({predicted:.1f} s): {100 * (epoch_s / predicted - 1):+.0f}%"
          f" (this machine's speed drifts between the two measures). The whole "
          f"command, start, loading and figures included: {command_s:.1f} s")  # fmt: skip


def main():
    args = parse_args()
    if args.one_epoch:
        return one_epoch(args.one_epoch, args.threads, args.batch)
    if not ANCHOR.exists():
        sys.exit(f"{ANCHOR} is missing: the PyTorch anchor lives in ../shared/anchors/")

    peak = blas_peak_gflops(args.threads)
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores; {args.threads} threads; batch "
          f"{args.batch}; BLAS peak (float32 2048x2048 product, {args.threads} threads): "
          f"{peak:.0f} GFLOP/s")  # fmt: skip
    if args.threads > 1:
        print(f"how the work scales from 1 to {args.threads} threads: BLAS "
              f"{blas_peak_gflops(1):.0f} -> {peak:.0f} GFLOP/s; elementwise passes over "
              f"1.6 MB arrays (a shard's activations) {memory_pass_gb_per_s(1):.0f} -> "
              f"{memory_pass_gb_per_s(args.threads):.0f} GB/s")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            _, blueprint = load_blueprint(arch)
            blueprint_file = Path(tmp) / f"{arch}.json"
            blueprint_file.write_text(json.dumps(blueprint))
            rows.append(compare(arch, blueprint, blueprint_file, args, peak))
            if args.epoch:
                print_epoch_check(arch, args, rows[-1])
    print(
        f"\n(time ratio: numpy-cnn's seconds per training step / PyTorch's, median of "
        f"{args.rounds} alternating rounds; inference: numpy-cnn's images/s / PyTorch's)"
    )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
