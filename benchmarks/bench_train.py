"""Speed and memory of training and inference, on fixed synthetic float32 data.

    python benchmarks/bench_train.py                       # minivgg and minivgg_bn, batch 64 and 256
    python benchmarks/bench_train.py --arch minivgg --batch 64 --threads 1
    python benchmarks/bench_train.py --json runs/bench.json   # also write the figures as JSON
    python benchmarks/bench_train.py --arch minivgg_bn_dropout --calls --no-layers

For each architecture and batch size it prints training images/s (forward +
backward + Adam update), the seconds a 60,000-image epoch would take, and a
per-layer table of forward and backward milliseconds (each layer alone on the
whole batch, on one thread: where the time goes; in training the worker threads
run these on shards of the batch at the same time); with --calls, the milliseconds
per step spent in each kind of call to the threads; then inference images/s at
batch 1000 (batch norm folded, as evaluate runs it, and layer by layer) and the
peak resident memory of the process. The thread count is printed with the
figures. A figure, not a test: nothing here asserts a time.
"""

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.learn.eval import predict_scores  # noqa: E402
from core.learn.loss import softmax_cross_entropy  # noqa: E402
from core.learn.optim import make_optimizer  # noqa: E402
from model import shards  # noqa: E402
from model.backward import backward  # noqa: E402
from model.blueprints import load_blueprint  # noqa: E402
from model.forward import forward  # noqa: E402
from model.initialize_parameters import initialize_parameters  # noqa: E402
from model.shapes import trace_shapes  # noqa: E402
from model.shards import get_threads, set_threads  # noqa: E402
from model.walk import walk_backward, walk_forward  # noqa: E402

INPUT_SHAPE = (1, 28, 28)


def synthetic_batch(batch, rng):
    return rng.standard_normal((batch, *INPUT_SHAPE), dtype=np.float32), rng.integers(0, 10, batch)


def time_training(blueprint, params, batch, steps, rng):
    """Seconds per training step (forward + loss + backward + Adam), median of ``steps``."""
    optimizer = make_optimizer("adam")
    state = optimizer.init(params)
    x, y = synthetic_batch(batch, rng)
    times = []
    for step in range(steps + 2):  # two warm-up steps
        t0 = time.perf_counter()
        scores, caches = forward(params, x, blueprint, train=True, rng=rng)
        _, dscores = softmax_cross_entropy(scores, y)
        grads = backward(dscores, caches, blueprint)
        params, state = optimizer.update(params, grads, state, step + 1, 1e-3)
        params = {**params, **caches.running_stats}
        times.append(time.perf_counter() - t0)
    return float(np.median(times[2:]))


def time_layers(blueprint, params, batch, repeats, rng):
    """Median forward and backward milliseconds of each layer, in training mode, called
    directly on the whole batch (one thread, no shards)."""
    x, _ = synthetic_batch(batch, rng)
    rows = []
    layers = [row for row in trace_shapes(blueprint, INPUT_SHAPE) if row.depth == 0]
    for i, row in enumerate(layers):
        fwd, bwd = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out, caches, _ = walk_forward(params, x, [row.spec], True, rng)
            t1 = time.perf_counter()
            walk_backward(out, caches, [row.spec], i > 0)  # the output stands in for dout
            fwd.append(t1 - t0)
            bwd.append(time.perf_counter() - t1)
        rows.append((row.label, 1e3 * np.median(fwd), 1e3 * np.median(bwd)))
        x = out
    return rows


def time_thread_calls(blueprint, params, batch, steps, rng):
    """(milliseconds per training step, {task: milliseconds per step}) of ``steps`` + 2
    steps with every call to the threads (model.shards.map_shards) timed, by the task it
    runs: ``_forward_part`` and ``_backward_part`` (the stretches of layers between the
    whole-batch ones), batch norm's and dropout's per-part tasks, ``_add`` (a residual sum).
    Means over the steps, warm-up included."""
    spent, real = defaultdict(float), shards.map_shards

    def timed(task, items):
        t0 = time.perf_counter()
        try:
            return real(task, items)
        finally:
            spent[getattr(task, "func", task).__qualname__] += time.perf_counter() - t0

    shards.map_shards = timed  # sharded_forward and sharded_backward look it up at each call
    try:
        t0 = time.perf_counter()
        time_training(blueprint, params, batch, steps, rng)
        total = time.perf_counter() - t0
    finally:
        shards.map_shards = real
    per_step = 1e3 / (steps + 2)
    return total * per_step, {task: s * per_step for task, s in spent.items()}


def inference_speeds(
    blueprint, params, batch, rng, ways=("folded", "plain"), images=3000, rounds=3
):
    """{way: images per second} of inference at ``batch``, medians of ``rounds`` passes over
    ``images`` images, the ways alternating: "folded" as evaluate and predict run it
    (core.learn.eval.predict_scores: batch norm folded into the layer before it), "plain" layer by
    layer (forward, nothing folded)."""
    x = rng.standard_normal((images, *INPUT_SHAPE), dtype=np.float32)

    def layer_by_layer(x):
        for i in range(0, len(x), batch):
            forward(params, x[i : i + batch], blueprint, keep_caches=False)

    runs = {
        "folded": lambda x: predict_scores(params, blueprint, x, batch),
        "plain": layer_by_layer,
    }
    seconds = {way: [] for way in ways}
    for way in ways:
        runs[way](x[:batch])  # warm-up
    for _ in range(rounds):
        for way in ways:
            t0 = time.perf_counter()
            runs[way](x)
            seconds[way].append(time.perf_counter() - t0)
    return {way: images / float(np.median(s)) for way, s in seconds.items()}


def time_inference(blueprint, params, batch, rng, images=5000):
    """Images per second of inference at ``batch`` as evaluate and predict run it (one pass)."""
    return inference_speeds(blueprint, params, batch, rng, ("folded",), images, 1)["folded"]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", nargs="+", default=["minivgg", "minivgg_bn"])
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    parser.add_argument(
        "--threads", type=int, default=None, help="worker threads (default: all cores)"
    )
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per setting")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--no-layers", action="store_true", help="skip the per-layer table (a shorter run)"
    )
    parser.add_argument(
        "--calls",
        action="store_true",
        help="also time each kind of call to the threads in training steps",
    )
    return parser.parse_args()


def bench_training(arch, blueprint, params, batch, args, rng):
    """Time and print the training of one architecture at one batch size; returns its figures."""
    step_s = time_training(blueprint, params, batch, args.steps, rng)
    layers = [] if args.no_layers else time_layers(blueprint, params, batch, 10, rng)
    result = {
        "arch": arch, "batch": batch, "threads": get_threads(),
        "train_images_per_s": batch / step_s, "epoch_seconds": 60000 / batch * step_s,
        "layers_ms": [{"layer": n, "forward": f, "backward": b} for n, f, b in layers],
        "peak_rss_mb_so_far": peak_rss_mb(),  # training only, if it is the first setting
    }  # fmt: skip
    print(f"\n{arch}, batch {batch}, {get_threads()} threads: training "
          f"{result['train_images_per_s']:.0f} images/s, "
          f"{result['epoch_seconds']:.1f} s per 60,000-image epoch")  # fmt: skip
    if args.calls:
        step_ms, calls = time_thread_calls(blueprint, params, batch, args.steps, rng)
        print(f"  calls to the threads, ms per step of {step_ms:.1f} ms (map_shards timed):")
        for task, ms in sorted(calls.items(), key=lambda item: -item[1]):
            print(f"    {task:<56}{ms:>8.2f}")
    if layers:
        print(f"  {'layer':<12}{'forward ms':>12}{'backward ms':>13}"
              "   (each layer alone, whole batch, one thread)")  # fmt: skip
        for name, f, b in layers:
            print(f"  {name:<12}{f:>12.2f}{b:>13.2f}")
        print(
            f"  {'total':<12}{sum(r[1] for r in layers):>12.2f}{sum(r[2] for r in layers):>13.2f}"
        )
    return result


def bench_inference(arch, blueprint, params, rng):
    """Time and print inference at batch 1000, folded and layer by layer; returns its figures."""
    ips = inference_speeds(blueprint, params, 1000, rng)
    print(f"\n{arch}: inference {ips['folded']:.0f} images/s at batch 1000, as evaluate "
          f"runs it (batch norm folded); {ips['plain']:.0f} layer by layer (alternating)")  # fmt: skip
    return {"arch": arch, "batch": 1000, "threads": get_threads(),
            "inference_images_per_s": ips["folded"],
            "inference_unfolded_images_per_s": ips["plain"]}  # fmt: skip


def main():
    args = parse_args()
    if args.threads:
        set_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}, python {platform.python_version()}, {os.cpu_count()} cores, "
          f"{get_threads()} worker threads")  # fmt: skip
    results = []
    for arch in args.arch:
        _, blueprint = load_blueprint(arch)
        params = initialize_parameters(blueprint, INPUT_SHAPE, np.random.default_rng(0))
        for batch in args.batch:
            results.append(bench_training(arch, blueprint, params, batch, args, rng))
        results.append(bench_inference(arch, blueprint, params, rng))
    print(f"\npeak resident memory: {peak_rss_mb():.0f} MB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"results": results, "peak_rss_mb": peak_rss_mb()}, indent=1)
        )
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
