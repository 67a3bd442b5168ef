"""The ONNX exports of the shipped models: agreement, size, and ONNX Runtime's speed beside
numpy-cnn's on the same CPU.

    python benchmarks/bench_export.py                     # every shipped model, and best's int8
    python benchmarks/bench_export.py --params best_params.npz --repeats 5

Each model is exported as ``python main.py export`` builds it (in memory), checked on its whole
test set (the largest difference of a probability from numpy-cnn's, and the images given the
same class), and its .onnx size is set beside the .npz's. Then inference is timed on the test
set at batch 1000 and on single images (the first 200, one at a time), numpy-cnn (its worker
threads, batch norm folded) and ONNX Runtime (CPU, its default threads) alternating,
``--repeats`` passes of each; the medians are printed. A figure, not a test: nothing here
asserts a time.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_quantize import cpu_name  # noqa: E402

from core.compress.quantize import quantize_file  # noqa: E402
from core.export.check import INPUT, check_onnx, pixels_of  # noqa: E402
from core.export.graph import build_onnx  # noqa: E402
from core.learn.eval import predict_proba  # noqa: E402
from core.report import model_inputs  # noqa: E402
from data import load_dataset  # noqa: E402
from model.params_io import load_model  # noqa: E402
from model.shards import get_threads  # noqa: E402

BATCH = 1000
SINGLES = 200  # images timed one at a time
SHIPPED = ["best_params.npz", "plot/fashion/fashion_params.npz",
           "plot/inside/adversarial/adversarial_params.npz",
           *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("plot/ensemble/*/best_params.npz"))]  # fmt: skip


def speeds(model, session, raw, batch):
    """(numpy-cnn, ONNX Runtime) images per second of one pass over ``raw`` in batches."""
    starts = range(0, len(raw), batch)
    t0 = time.perf_counter()
    for i in starts:  # as predict does: the pictures normalized, then the network
        predict_proba(model.params, model.blueprint, model_inputs(raw[i : i + batch], model.meta))
    ours = len(raw) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in starts:
        session.run(None, {INPUT: pixels_of(raw[i : i + batch])})
    return ours, len(raw) / (time.perf_counter() - t0)


def measure(path, model, repeats, timed, label=None):
    """Print one model's agreement and sizes, and (``timed``) its speeds; ``label`` names it
    (default: its path)."""
    raw = load_dataset(model.meta["dataset"]).x_test
    proto = build_onnx(model, path)
    agreement = check_onnx(proto, model, raw)
    serialized = proto.SerializeToString()
    npz = os.path.getsize(path)
    print(f"{label or path}: {agreement.largest:.1e} largest difference, same class {agreement.same_class:,}"
          f"/{agreement.images:,}; .npz {npz:,} bytes, .onnx {len(serialized):,} bytes "
          f"({100 * len(serialized) / npz:.1f}%)")  # fmt: skip
    if not timed:
        return
    session = onnxruntime.InferenceSession(serialized, providers=["CPUExecutionProvider"])
    for batch, images in ((BATCH, raw), (1, raw[:SINGLES])):
        runs = np.array([speeds(model, session, images, batch) for _ in range(repeats)])
        ours, theirs = np.median(runs, axis=0)
        print(f"  batch {batch:>4}: numpy-cnn {ours:,.0f} images/s, ONNX Runtime "
              f"{theirs:,.0f} images/s ({theirs / ours:.1f}x)")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", nargs="+", default=SHIPPED)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each engine")
    parser.add_argument("--timed", nargs="*", default=["best_params.npz",
                        "plot/fashion/fashion_params.npz", "int8"],
                        help="the models whose speed is measured (int8: best's int8 copy)")  # fmt: skip
    args = parser.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} cores, numpy-cnn {get_threads()} worker threads; "
          f"numpy {np.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"python {platform.python_version()}")  # fmt: skip
    started = time.perf_counter()
    os.chdir(ROOT)
    for path in args.params:
        measure(path, load_model(path), args.repeats, path in args.timed)
    if "int8" in args.timed or "best_params.npz" in args.params:
        with tempfile.TemporaryDirectory() as tmp:
            done = quantize_file("best_params.npz", Path(tmp) / "best_params.int8.npz")
            label = "int8 copy of best_params.npz (python main.py quantize)"
            measure(done.path, load_model(done.path), args.repeats, "int8" in args.timed, label)
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
