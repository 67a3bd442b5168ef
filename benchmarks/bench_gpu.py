"""numpy-cnn on CuPy against PyTorch eager on the same GPU and the same blueprints.

    python benchmarks/bench_gpu.py --out runs/bench_gpu.json      # everything (about an hour)
    python benchmarks/bench_gpu.py --arch minivgg --batch 512 --steps 20 --tta none
    bash benchmarks/gpu_check.sh                                  # the short run of a GPU check

Training speed. For each architecture (minivgg, minivgg_bn_dropout, resnet), precision
(float32, mixed) and batch size (128, 512): images/s of training steps (forward, loss,
backward, Adam) of
  - numpy-cnn on CuPy: the training loop's own step (core/learn/train.py ``train_step``, or
    ``mixed_step`` with its loss scaling) on a batch already on the GPU, its dropout masks
    drawn on the CPU as in training;
  - PyTorch eager: the same blueprint built by ../shared/anchors/torch_blueprint.py (its
    ``build``, imported), Adam; mixed: ``torch.autocast`` float16 with a GradScaler;
and the time ratio numpy-cnn / PyTorch (the goal: at most 1.5 in float32 at batch 512), and
the peak device memory of each: for CuPy the bytes its memory pool holds at the end of the
setting (freed before it; the pool keeps what it took, so that is its peak), for PyTorch its
``max_memory_reserved`` (what its caching allocator took; ``max_memory_allocated`` beside it).

Time to accuracy (``--tta``). ``python main.py train --device gpu`` of a recipe, in a fresh
process, timed epoch by epoch from its log.csv (training seconds; validation aside) until its
validation accuracy first reaches the target (MNIST 99.5%, Fashion-MNIST 94%), beside the same
recipe in PyTorch eager in this process: the blueprint, optimizer, weight decay on the weights
only, learning-rate schedule, batch size, epochs, shuffles and augmentations (numpy-cnn's own
augmentation functions on the GPU, handed to PyTorch through DLPack), validated on the same
images. Each side stops at ``--tta-budget`` seconds; a target not reached says so.

It prints the GPU's name and the versions, a table per part, and writes everything as JSON to
``--out``. A figure, not a test: nothing here asserts a time. It needs CuPy and PyTorch with
CUDA, and neither is a dependency of the project (``pip install -e ".[gpu]"`` brings CuPy).
"""

import argparse
import dataclasses
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.learn import precision  # noqa: E402
from core.learn.config import TrainConfig  # noqa: E402
from core.learn.device import placed  # noqa: E402
from core.learn.prepare import TrainData, make_rng, prepare_data  # noqa: E402
from core.learn.runs import make_run  # noqa: E402
from core.learn.schedules import lr_at  # noqa: E402
from core.learn.train import augmented, mixed_step, train_step  # noqa: E402
from data.normalization import Normalization  # noqa: E402
from layers.arraylib import cupy, gpu_missing  # noqa: E402
from model.blueprints import load_blueprint  # noqa: E402
from model.initialize_parameters import initialize_parameters  # noqa: E402

ANCHOR = ROOT.parent / "shared" / "anchors" / "torch_blueprint.py"
INPUT_SHAPE = (1, 28, 28)
ARCHS = ["minivgg", "minivgg_bn_dropout", "resnet"]
TARGETS = {"mnist": 0.995, "fashion-mnist": 0.94}  # validation accuracy to reach
RECIPES = {  # train options of each time-to-accuracy run (chosen, not yet tuned on a GPU)
    "mnist": "--preset best --batch-size 128 --epochs 12",
    "fashion-mnist": "--preset fashion",
}
MIB = 2**20


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", nargs="+", default=ARCHS)
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--precision", nargs="+", default=["float32", "mixed"],
                        choices=["float32", "mixed"])  # fmt: skip
    parser.add_argument("--steps", type=int, default=30, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (CuPy "
                        "compiles its kernels at their first use)")  # fmt: skip
    parser.add_argument("--tta", nargs="+", default=["mnist", "fashion-mnist"],
                        help="datasets of the time-to-accuracy runs, or none")  # fmt: skip
    parser.add_argument("--tta-budget", type=float, default=900.0,
                        help="seconds each time-to-accuracy run may take, per side")  # fmt: skip
    parser.add_argument("--recipe", action="append", default=[], metavar="DATASET=OPTIONS",
                        help="train options of a time-to-accuracy run, e.g. "
                        "'mnist=--preset best --epochs 10'")  # fmt: skip
    parser.add_argument("--anchor", type=Path, default=ANCHOR, help="torch_blueprint.py")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file of the results")
    return parser.parse_args()


def load_anchor(path):
    """The PyTorch anchor module (its ``build`` makes a blueprint's network with torch.nn)."""
    if not path.exists():
        sys.exit(f"{path}: no PyTorch anchor there; give its path with --anchor")
    spec = importlib.util.spec_from_file_location("torch_blueprint", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synchronize():
    cupy.cuda.Device().synchronize()


# -- training speed ------------------------------------------------------------------------------


def numpy_cnn_speed(arch, batch, mode, args):
    """(images/s, MiB the CuPy pool holds) of numpy-cnn's training steps on the GPU."""
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    _, blueprint = load_blueprint(arch)
    rng = np.random.default_rng(0)
    x = cupy.asarray(rng.standard_normal((batch, *INPUT_SHAPE), dtype=np.float32))
    y = cupy.asarray(rng.integers(0, 10, batch))
    config = dataclasses.replace(TrainConfig(), arch=arch, batch_size=batch, precision=mode)
    norm = Normalization.from_arrays([0.0], [1.0])
    data = TrainData(x, y, x, y, norm, np.zeros(1, np.float32), dataset=None)
    run = make_run(config, data, blueprint)
    params = placed(initialize_parameters(blueprint, INPUT_SHAPE, make_rng(0, 0)), cupy)
    opt_state, scaling = run.optimizer.init(params), precision.Scaling()
    times = []
    for step in range(args.warmup + args.steps):
        synchronize()
        t0 = time.perf_counter()
        step_rng = make_rng(0, 3, 0, step)
        if mode == "mixed":
            params, opt_state, _, _, scaling = mixed_step(
                params, opt_state, x, y, run, step, 1e-3, step_rng, scaling
            )
        else:
            params, opt_state, _, _ = train_step(params, opt_state, x, y, run, step, 1e-3, step_rng)
        synchronize()
        times.append(time.perf_counter() - t0)
    held = pool.total_bytes() / MIB
    del params, opt_state, x, y, data, run
    pool.free_all_blocks()
    return batch / float(np.median(times[args.warmup :])), held


def torch_speed(anchor, arch, batch, mode, args):
    """(images/s, MiB reserved, MiB allocated at most) of PyTorch eager's training steps."""
    import torch

    _, blueprint = load_blueprint(arch)
    torch.manual_seed(0)
    net = anchor.build(blueprint, INPUT_SHAPE, torch.nn)[0].cuda().train()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=mode == "mixed")
    x = torch.randn(batch, *INPUT_SHAPE, device="cuda")
    y = torch.randint(0, 10, (batch,), device="cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.warmup + args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=mode == "mixed"):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    reserved = torch.cuda.max_memory_reserved() / MIB
    allocated = torch.cuda.max_memory_allocated() / MIB
    del net, opt, x, y
    torch.cuda.empty_cache()
    return batch / float(np.median(times[args.warmup :])), reserved, allocated


def training_speeds(anchor, args):
    rows = []
    for arch in args.arch:
        for mode in args.precision:
            for batch in args.batch:
                ours, held = numpy_cnn_speed(arch, batch, mode, args)
                theirs, reserved, allocated = torch_speed(anchor, arch, batch, mode, args)
                rows.append({
                    "arch": arch, "precision": mode, "batch": batch,
                    "numpy_cnn_images_per_s": ours, "torch_images_per_s": theirs,
                    "time_ratio": theirs / ours,  # numpy-cnn's seconds over PyTorch's
                    "numpy_cnn_pool_mib": held, "torch_reserved_mib": reserved,
                    "torch_allocated_mib": allocated,
                })  # fmt: skip
                print(f"  {arch} {mode} batch {batch}: numpy-cnn {ours:.0f} images/s, "
                      f"PyTorch {theirs:.0f} images/s, ratio {theirs / ours:.2f}", flush=True)  # fmt: skip
    return rows


# -- time to accuracy ----------------------------------------------------------------------------


def recipe_config(options):
    """The TrainConfig that ``python main.py train OPTIONS`` trains."""
    import main
    from core.commands.train import train_config

    return train_config(main.parse(["train", *options.split()]))


def dataset_here(name):
    from data import load_dataset

    try:
        load_dataset(name)
    except Exception as err:  # noqa: BLE001 (any reason it cannot be read means: not here)
        return f"{name} cannot be read here ({str(err).splitlines()[0][:120]})"
    return ""


def first_reached(seconds, accuracies, target):
    """(training seconds until the first epoch at ``target``, that epoch), or (None, None)."""
    total = 0.0
    for epoch, (s, acc) in enumerate(zip(seconds, accuracies, strict=True), start=1):
        total += s
        if acc >= target:
            return total, epoch
    return None, None


def numpy_cnn_to_accuracy(options, mode, target, budget):
    """``python main.py train --device gpu`` of the recipe, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "main.py", "train", *options.split(), "--device", "gpu",
                   "--precision", mode, "--out", str(Path(tmp) / "run")]  # fmt: skip
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                  timeout=budget)  # fmt: skip
            stopped = (
                "" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-300:]}"
            )
        except subprocess.TimeoutExpired:
            stopped = f"stopped at the budget of {budget:.0f} s"
        wall = time.perf_counter() - started
        log_file = Path(tmp) / "run" / "log.csv"
        log = pd.read_csv(log_file) if log_file.exists() else pd.DataFrame()
    seconds, epoch = (None, None) if log.empty else first_reached(
        log["seconds"], log["val_acc"], target
    )  # fmt: skip
    return {
        "seconds_to_target": seconds, "epoch_at_target": epoch, "epochs_run": len(log),
        "best_val_acc": None if log.empty else float(log["val_acc"].max()),
        "train_seconds": None if log.empty else float(log["seconds"].sum()),
        "wall_seconds": wall, "stopped": stopped,
        "skipped_steps": int(log["skipped_steps"].sum()) if "skipped_steps" in log else None,
    }  # fmt: skip


def torch_optimizer(torch, net, config):
    """The recipe's optimizer in PyTorch, its weight decay on the weights alone (as is_weight)."""
    weights = [p for p in net.parameters() if p.ndim > 1]
    others = [p for p in net.parameters() if p.ndim <= 1]
    groups = [{"params": weights, "weight_decay": config.weight_decay},
              {"params": others, "weight_decay": 0.0}]  # fmt: skip
    optimizers = {
        "sgd": lambda: torch.optim.SGD(groups, config.lr),
        "momentum": lambda: torch.optim.SGD(groups, config.lr, momentum=0.9),
        "nesterov": lambda: torch.optim.SGD(groups, config.lr, momentum=0.9, nesterov=True),
        "adam": lambda: torch.optim.Adam(groups, config.lr, eps=1e-8),
        "adamw": lambda: torch.optim.AdamW(groups, config.lr, eps=1e-8),
    }
    if config.optimizer not in optimizers:
        raise SystemExit(f"--optimizer {config.optimizer}: not in this benchmark's PyTorch side")
    return optimizers[config.optimizer]()


def torch_to_accuracy(anchor, config, mode, target, budget):
    """The recipe of ``config`` in PyTorch eager on the same data, draws and augmentations."""
    import torch

    data = prepare_data(config)
    _, blueprint = load_blueprint(config.arch, data.dataset.n_classes)
    torch.manual_seed(config.seed)
    net = anchor.build(blueprint, data.x_train.shape[1:], torch.nn)[0].cuda()
    opt = torch_optimizer(torch, net, config)
    scaler = torch.amp.GradScaler("cuda", enabled=mode == "mixed")
    x_train, y_train = cupy.asarray(data.x_train), torch.as_tensor(data.y_train, device="cuda")
    x_val, y_val = torch.as_tensor(data.x_val, device="cuda"), torch.as_tensor(data.y_val).cuda()
    per_epoch = -(-len(data.y_train) // config.batch_size)
    total, warmup = config.epochs * per_epoch, round(config.warmup_epochs * per_epoch)
    seconds, accuracies, started = [], [], time.perf_counter()
    for epoch in range(config.epochs):
        net.train()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        order = make_rng(config.seed, 2, epoch).permutation(len(data.y_train))
        for b, lo in enumerate(range(0, len(order), config.batch_size)):
            idx = cupy.asarray(order[lo : lo + config.batch_size])
            xb = augmented(config, data.fill, x_train[idx], make_rng(config.seed, 3, epoch, b))
            lr = lr_at(epoch * per_epoch + b, total, config.lr, config.schedule, warmup)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=mode == "mixed"):
                scores = net(torch.from_dlpack(xb))
                loss = torch.nn.functional.cross_entropy(scores, y_train[torch.from_dlpack(idx)])
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
        net.eval()
        with torch.no_grad():
            hits = sum(int((net(x_val[i : i + 1000]).argmax(1) == y_val[i : i + 1000]).sum())
                       for i in range(0, len(x_val), 1000))  # fmt: skip
        accuracies.append(hits / len(x_val))
        if accuracies[-1] >= target or time.perf_counter() - started > budget:
            break
    reached, epoch = first_reached(seconds, accuracies, target)
    stopped = (
        ""
        if reached or len(seconds) == config.epochs
        else f"stopped at the budget of {budget:.0f} s"
    )
    return {"seconds_to_target": reached, "epoch_at_target": epoch, "epochs_run": len(seconds),
            "best_val_acc": max(accuracies), "train_seconds": sum(seconds),
            "wall_seconds": time.perf_counter() - started, "stopped": stopped}  # fmt: skip


def times_to_accuracy(anchor, args):
    recipes = {**RECIPES, **dict(r.split("=", 1) for r in args.recipe)}
    rows = []
    for name in [] if args.tta == ["none"] else args.tta:
        options = f"--dataset {name} {recipes[name]}"
        if why := dataset_here(name):
            rows.append({"dataset": name, "recipe": options, "skipped": why})
            print(f"  {name}: skipped: {why}", flush=True)
            continue
        config = recipe_config(options)
        for mode in args.precision:
            ours = numpy_cnn_to_accuracy(options, mode, TARGETS[name], args.tta_budget)
            theirs = torch_to_accuracy(anchor, config, mode, TARGETS[name], args.tta_budget)
            rows.append({"dataset": name, "recipe": options, "precision": mode,
                         "target": TARGETS[name], "numpy_cnn": ours, "torch": theirs})  # fmt: skip
            print(f"  {name} {mode}: numpy-cnn {shown(ours)}; PyTorch {shown(theirs)}", flush=True)
    return rows


def shown(result):
    if result["seconds_to_target"] is None:
        return (f"not reached in {result['epochs_run']} epochs (best {result['best_val_acc']}) "
                f"{result['stopped']}").strip()  # fmt: skip
    return (f"{result['seconds_to_target']:.1f} s (epoch {result['epoch_at_target']}, "
            f"best {result['best_val_acc']:.4f})")  # fmt: skip


def main():
    args = parse_args()
    if missing := gpu_missing():
        sys.exit(f"bench_gpu.py needs a GPU: {missing}")
    import torch

    anchor = load_anchor(args.anchor)
    gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    header = {"gpu": gpu, "cupy": cupy.__version__, "torch": torch.__version__,
              "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(), "numpy": np.__version__}  # fmt: skip
    print(", ".join(f"{k} {v}" for k, v in header.items()), flush=True)
    results = {**header, "command": " ".join(sys.argv), "training": [], "time_to_accuracy": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print("\ntraining speed (forward, loss, backward, Adam), median of "
          f"{args.steps} steps after {args.warmup}:", flush=True)  # fmt: skip
    results["training"] = training_speeds(anchor, args)
    args.out.write_text(json.dumps(results, indent=1))  # what is done so far, if a later part fails
    table = pd.DataFrame(results["training"])
    if not table.empty:
        print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\ntime to accuracy (training seconds until the validation accuracy first reaches "
          "the target):", flush=True)  # fmt: skip
    results["time_to_accuracy"] = times_to_accuracy(anchor, args)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"\nresults: {args.out}")


if __name__ == "__main__":
    main()
