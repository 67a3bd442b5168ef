"""The int8 model against its float model: test accuracy, file size and inference speed.

    python benchmarks/bench_quantize.py                              # the shipped best_params.npz
    python benchmarks/bench_quantize.py --params runs/best/best_params.npz --repeats 5

It quantizes the model as ``python main.py quantize`` does (into a temporary folder, timed),
evaluates both models on the whole test set of their dataset, and times inference at batch
1000 over the test set, float and int8 passes alternating (``--repeats`` of each), with the
worker threads of the program (``--threads``). Then a per-layer table of each model (each
layer alone on a batch of 1000, one thread): where the time goes. It prints the CPU model,
the thread count and the figures. A figure, not a test: nothing here asserts a time.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.compress.quantize import quantize_file  # noqa: E402
from core.learn.eval import predict_scores  # noqa: E402
from core.report import load_test_set  # noqa: E402
from model.params_io import load_model  # noqa: E402
from model.shards import get_threads, set_threads  # noqa: E402
from model.walk import walk_forward  # noqa: E402

BATCH = 1000


def cpu_name():
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed_scores(model, x):
    """(scores (N, K), images per second) of one pass over ``x`` at batch 1000."""
    t0 = time.perf_counter()
    scores = predict_scores(model.params, model.blueprint, x, batch_size=BATCH)
    return scores, len(x) / (time.perf_counter() - t0)


def layer_times(model, x, repeats=3):
    """[(label, median ms)] of each top-level layer alone on the batch ``x``, one thread."""
    rows = []
    for spec in model.blueprint:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = walk_forward(model.params, x, [spec], keep_caches=False)[0]
            times.append(time.perf_counter() - t0)
        rows.append((spec.get("name", spec["type"]), spec["type"], 1e3 * np.median(times)))
        x = out
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, default=ROOT / "best_params.npz")
    parser.add_argument("--calibration", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each model")
    parser.add_argument(
        "--threads", type=int, default=None, help="worker threads (default: all cores)"
    )
    args = parser.parse_args()
    if args.threads:
        set_threads(args.threads)
    print(
        f"{cpu_name()}, {os.cpu_count()} cores, {get_threads()} worker threads; "
        f"numpy {np.__version__}, python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        done = quantize_file(args.params, Path(tmp) / "int8.npz", args.calibration)
        quantize_s = time.perf_counter() - t0
        float_bytes, int8_bytes = os.path.getsize(args.params), os.path.getsize(done.path)
        models = {"float32": load_model(args.params), "int8": load_model(done.path)}
    print(
        f"quantize: {quantize_s:.1f} s ({args.calibration} calibration images; "
        f"{len(done.folded)} batch norms folded)"
    )
    print(
        f"file size: float {float_bytes:,} bytes, int8 {int8_bytes:,} bytes "
        f"({100 * int8_bytes / float_bytes:.1f}%)"
    )
    x, y, _ = load_test_set(models["float32"].meta)
    speeds, pred = {name: [] for name in models}, {}
    for _ in range(args.repeats):
        for name, model in models.items():  # alternating, so a drift in speed hits both
            scores, speed = timed_scores(model, x)
            speeds[name].append(speed)
            pred[name] = scores.argmax(axis=1)
    for name in models:
        errors = int((pred[name] != y).sum())
        runs = ", ".join(f"{s:,.0f}" for s in speeds[name])
        print(
            f"{name:>7}: test accuracy {100 * (1 - errors / len(y)):.2f}% ({errors} errors in "
            f"{len(y):,}); inference at batch {BATCH}: {runs} images/s"
        )
    ratio = np.median(speeds["int8"]) / np.median(speeds["float32"])
    differ = int((pred["int8"] != pred["float32"]).sum())
    print(f"int8 speed / float speed: {ratio:.2f} (medians); predictions that differ: {differ}")
    print(f"\nper layer, ms on a batch of {BATCH}, one thread (each layer alone):")
    for name, model in models.items():
        rows = layer_times(model, x[:BATCH])
        print(f"  {name}: " + ", ".join(f"{label} {ms:.0f}" for label, _, ms in rows))
        print(f"  {name} total: {sum(ms for _, _, ms in rows):.0f} ms")


if __name__ == "__main__":
    main()
