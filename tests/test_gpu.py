"""The GPU path (CuPy, ``--device gpu``) against the CPU path (NumPy): one code, two libraries.

Every layer kind forward and backward (1e-5 relative in float32, 1e-12 in float64), the whole
network's gradient, the optimizers and augmentations, 50 training steps on each device, model
files and checkpoints carried from one device to the other, exact resume on the GPU (float32
and mixed precision), and the commands under --device gpu. A relative error here is the
largest difference over the largest magnitude of the NumPy result.

Skipped, with the reason, where CuPy or a CUDA device is missing (layers/arraylib.py
``gpu_missing``); benchmarks/gpu_check.sh runs it on a GPU machine. Measured figures are
printed as "measured: ..." lines (pytest -s shows them).
"""

import dataclasses

import numpy as np
import pytest

import core.learn.train
import main
from core.learn.config import RECIPES
from core.learn.eval import predict_scores
from core.learn.gradcheck import _case_input, _fixed, kind_cases
from core.learn.loss import softmax_cross_entropy
from core.learn.optim import OPTIMIZERS, make_optimizer
from core.learn.prepare import make_rng
from core.learn.train import augmented, train
from data import load_dataset
from layers.arraylib import cupy, gpu_missing, to_numpy
from model.backward import backward
from model.blueprints import load_blueprint, validate_blueprint
from model.executor import PLAIN
from model.forward import forward, set_executor
from model.gpu import GPU
from model.initialize_parameters import initialize_parameters
from model.params_io import load_checkpoint, load_model
from model.quantize import quantize_model
from model.shapes import trace_shapes
from model.shards import THREADS
from model.walk import walk_backward, walk_forward

MISSING = gpu_missing()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"no GPU to test: {MISSING}")

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}
# 1000 MNIST images: 800 to train, 50 batches of 16 (one epoch), 200 to validate. Momentum
# SGD, not Adam: Adam's step is about lr whatever the gradient's size, so a gradient that is
# float rounding alone (a bias right before a batch norm) would move as much as any other.
STEPS_50 = dataclasses.replace(
    RECIPES["default"], arch="minivgg_bn_dropout", limit=1000, val_size=200, epochs=1,
    optimizer="momentum", lr=0.01, augment=True, crop=2, erase=0.5,
)  # fmt: skip
TWO_EPOCHS = dataclasses.replace(STEPS_50, epochs=2)


@pytest.fixture(autouse=True)
def cpu_executor_after():
    """Every test leaves the CPU's executor current, as a command without --device has it."""
    yield
    set_executor(THREADS)


def relative(a, b):
    """max |a - b| / max |b| (b: the NumPy result)."""
    a, b = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    scale = np.abs(b).max() if b.size else 0.0
    return float(np.abs(a - b).max() / scale) if scale else float(np.abs(a).max(initial=0.0))


def on_gpu(arrays):
    return {key: cupy.asarray(a) for key, a in arrays.items()}


def test_the_gpu_is_found():
    assert MISSING == ""
    print(f"\nmeasured: GPU {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}, "
          f"CuPy {cupy.__version__}")  # fmt: skip


# -- every layer kind ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("type_name", "case"), kind_cases(), ids=[c.label for _, c in kind_cases()]
)
def test_a_layer_kind_forward_and_backward_on_the_gpu_agree_with_numpy(type_name, case, dtype):
    rng = np.random.default_rng(0)
    specs = validate_blueprint([{"type": type_name, "name": type_name, **case.hyper}])
    params = {
        key: (rng.standard_normal(p.shape) if p.trainable else _fixed(p)).astype(dtype)
        for row in trace_shapes(specs, case.in_shape[1:])
        for key, p in row.params.items()
    }
    x = _case_input(case, rng).astype(dtype)
    for train_mode in (True, False):
        cpu = walk_forward(params, x, specs, train_mode, np.random.default_rng(1))
        gpu = walk_forward(on_gpu(params), cupy.asarray(x), specs, train_mode,
                           np.random.default_rng(1))  # fmt: skip
        assert isinstance(gpu[0], cupy.ndarray) and gpu[0].dtype == dtype
        assert relative(gpu[0], cpu[0]) <= TOLERANCE[dtype], (case.label, train_mode, "out")
        for key in cpu[2]:  # batch norm's running statistics
            assert relative(gpu[2][key], cpu[2][key]) <= TOLERANCE[dtype], (case.label, key)
        dout = rng.standard_normal(cpu[0].shape).astype(dtype)
        dx_cpu, grads_cpu = walk_backward(dout, cpu[1], specs)
        dx_gpu, grads_gpu = walk_backward(cupy.asarray(dout), gpu[1], specs)
        assert relative(dx_gpu, dx_cpu) <= TOLERANCE[dtype], (case.label, train_mode, "dx")
        assert grads_gpu.keys() == grads_cpu.keys()
        for key in grads_cpu:
            assert grads_gpu[key].dtype == dtype
            assert relative(grads_gpu[key], grads_cpu[key]) <= TOLERANCE[dtype], (case.label, key)


def test_the_loss_on_the_gpu_agrees_with_numpy():
    rng = np.random.default_rng(2)
    scores, labels = rng.standard_normal((64, 10)).astype(np.float32), rng.integers(0, 10, 64)
    loss_cpu, d_cpu = softmax_cross_entropy(scores, labels)
    loss_gpu, d_gpu = softmax_cross_entropy(cupy.asarray(scores), labels)
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-6)
    assert relative(d_gpu, d_cpu) <= 1e-5


def test_an_int8_model_infers_on_the_gpu_as_on_the_cpu():
    model = load_model("best_params.npz")
    x = load_dataset("mnist").x_test[:200]
    x = model.inputs(x.astype(np.float32) / 255)
    params, blueprint = quantize_model(model.params, model.blueprint, x[:100])[:2]
    cpu = predict_scores(params, blueprint, x)
    set_executor(GPU)
    gpu = predict_scores(params, blueprint, x)
    assert isinstance(gpu, np.ndarray)  # NumPy in, NumPy out
    assert relative(gpu, cpu) <= 1e-5


# -- the whole network ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["minivgg_bn_dropout", "resnet"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_whole_network_gradient_on_the_gpu_agrees_with_numpy(arch, dtype):
    _, blueprint = load_blueprint(arch)
    params = initialize_parameters(blueprint, (1, 28, 28), np.random.default_rng(3))
    params = {key: a.astype(dtype) for key, a in params.items()}
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((8, 1, 28, 28)).astype(dtype), rng.integers(0, 10, 8)
    results = []
    for p, xb, executor in ((params, x, PLAIN), (on_gpu(params), cupy.asarray(x), GPU)):
        scores, caches = forward(
            p, xb, blueprint, train=True, rng=np.random.default_rng(5), executor=executor
        )
        loss, dscores = softmax_cross_entropy(scores, y)
        results.append((scores, loss, backward(dscores, caches, blueprint)))
    (s_cpu, l_cpu, g_cpu), (s_gpu, l_gpu, g_gpu) = results
    tolerance = {np.float32: 1e-4, np.float64: 1e-10}[dtype]  # rounding adds up over layers
    assert relative(s_gpu, s_cpu) <= tolerance and l_gpu == pytest.approx(l_cpu, rel=tolerance)
    worst = max(relative(g_gpu[key], g_cpu[key]) for key in g_cpu)
    print(f"\nmeasured: {arch} {np.dtype(dtype).name} gradient, largest relative error {worst:.1e}")
    assert worst <= tolerance


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_an_optimizer_step_on_the_gpu_agrees_with_numpy(name):
    rng = np.random.default_rng(6)
    params = {"a.W": rng.standard_normal((5, 4)).astype(np.float32),
              "a.b": rng.standard_normal(4).astype(np.float32)}  # fmt: skip
    grads = {key: rng.standard_normal(a.shape).astype(np.float32) for key, a in params.items()}
    optimizer = make_optimizer(name, weight_decay=1e-3)
    new_cpu, state_cpu = optimizer.update(params, grads, optimizer.init(params), 1, 0.1)
    p_gpu = on_gpu(params)
    new_gpu, state_gpu = optimizer.update(p_gpu, on_gpu(grads), optimizer.init(p_gpu), 1, 0.1)
    for key in new_cpu:
        assert (
            isinstance(new_gpu[key], cupy.ndarray) and relative(new_gpu[key], new_cpu[key]) <= 1e-6
        )
    for key in state_cpu:
        assert isinstance(state_gpu[key], cupy.ndarray)
        assert relative(state_gpu[key], state_cpu[key]) <= 1e-6


def test_the_augmentations_on_the_gpu_draw_and_give_what_they_give_on_the_cpu():
    x = load_dataset("mnist").x_train[:32].astype(np.float32) / 255
    fill = np.zeros(1, np.float32)
    config = dataclasses.replace(RECIPES["default"], augment=True, crop=2, erase=0.5)
    cpu = augmented(config, fill, x, make_rng(0, 3, 0, 0))
    gpu = augmented(config, fill, cupy.asarray(x), make_rng(0, 3, 0, 0))
    assert isinstance(gpu, cupy.ndarray) and gpu.dtype == np.float32
    assert relative(gpu, cpu) <= 1e-5


# -- training ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 50-step run on each device, and the two-epoch run on the GPU: {name: folder}."""
    folders = {name: tmp_path_factory.mktemp(name) for name in ("cpu", "gpu", "gpu2")}
    train(STEPS_50, folders["cpu"])
    train(STEPS_50, folders["gpu"], device="gpu")
    train(TWO_EPOCHS, folders["gpu2"], device="gpu")
    return folders


def test_fifty_training_steps_on_the_gpu_follow_the_cpu_up_to_rounding(runs):
    cpu, gpu = (load_checkpoint(runs[d] / "checkpoint.npz") for d in ("cpu", "gpu"))
    assert cpu.meta["run_state"]["epoch"] == gpu.meta["run_state"]["epoch"] == 1
    whole = np.concatenate([(gpu.params[k] - cpu.params[k]).ravel() for k in cpu.params])
    norm = np.concatenate([cpu.params[k].ravel() for k in cpu.params])
    error = float(np.linalg.norm(whole) / np.linalg.norm(norm))
    log_cpu, log_gpu = (cpu.meta["run_state"]["log_rows"][0], gpu.meta["run_state"]["log_rows"][0])
    print(f"\nmeasured: 50 steps, parameters' relative difference GPU vs CPU {error:.1e}; "
          f"train loss {log_gpu['train_loss']:.5f} vs {log_cpu['train_loss']:.5f}, val acc "
          f"{log_gpu['val_acc']:.4f} vs {log_cpu['val_acc']:.4f}")  # fmt: skip
    assert error <= 1e-3
    assert log_gpu["train_loss"] == pytest.approx(log_cpu["train_loss"], rel=1e-3)
    assert abs(log_gpu["val_acc"] - log_cpu["val_acc"]) <= 0.02


def test_a_model_file_written_on_one_device_is_read_and_run_on_the_other(runs):
    x = load_dataset("mnist").x_test[:500]
    for folder in (runs["cpu"], runs["gpu"]):
        model = load_model(folder / "best_params.npz")
        assert all(type(a) is np.ndarray and a.dtype == np.float32 for a in model.params.values())
        inputs = model.inputs(x.astype(np.float32) / 255)
        on_cpu = predict_scores(model.params, model.blueprint, inputs)
        set_executor(GPU)
        on_gpu_ = predict_scores(model.params, model.blueprint, inputs)
        set_executor(THREADS)
        assert relative(on_gpu_, on_cpu) <= 1e-4
        assert (on_gpu_.argmax(1) != on_cpu.argmax(1)).sum() <= 1


def interrupt_at(monkeypatch, call):
    """train_step raises KeyboardInterrupt (a Ctrl-C) at its ``call``-th call."""
    real, calls = core.learn.train.train_step, []

    def interrupting(*args):
        calls.append(None)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(core.learn.train, "train_step", interrupting)


def test_an_interrupted_gpu_run_resumes_on_the_gpu_to_the_same_bits(runs, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        interrupt_at(patch, 50 + 7)  # in epoch 2
        with pytest.raises(KeyboardInterrupt):
            train(TWO_EPOCHS, tmp_path, device="gpu")
    train(None, tmp_path, resume=True, device="gpu")
    ours, ref = (load_checkpoint(d / "checkpoint.npz") for d in (tmp_path, runs["gpu2"]))
    for key in ref.params:
        assert ours.params[key].tobytes() == ref.params[key].tobytes(), key
    for key in ref.opt_state:
        assert ours.opt_state[key].tobytes() == ref.opt_state[key].tobytes(), key


def test_a_gpu_checkpoint_resumes_on_the_cpu(runs, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        interrupt_at(patch, 50 + 7)
        with pytest.raises(KeyboardInterrupt):
            train(TWO_EPOCHS, tmp_path, device="gpu")
    train(None, tmp_path, resume=True)  # the CPU
    ours, ref = (load_checkpoint(d / "checkpoint.npz") for d in (tmp_path, runs["gpu2"]))
    assert ours.meta["run_state"]["epoch"] == 2
    whole = np.concatenate([(ours.params[k] - ref.params[k]).ravel() for k in ref.params])
    norm = np.concatenate([ref.params[k].ravel() for k in ref.params])
    assert np.linalg.norm(whole) / np.linalg.norm(norm) <= 1e-3


def test_mixed_precision_trains_on_the_gpu_logs_its_skips_and_resumes_exactly(
    runs, tmp_path, monkeypatch
):
    mixed = dataclasses.replace(TWO_EPOCHS, precision="mixed")
    _, log = train(mixed, tmp_path / "whole", device="gpu")
    assert "skipped_steps" in log.columns and (log["skipped_steps"] >= 0).all()
    float32 = load_checkpoint(runs["gpu2"] / "checkpoint.npz").meta["run_state"]["log_rows"]
    print(
        f"\nmeasured: mixed precision, val acc {list(log['val_acc'])} (float32: "
        f"{[row['val_acc'] for row in float32]}), skipped {list(log['skipped_steps'])}"
    )
    assert log["val_acc"].iloc[-1] >= float32[-1]["val_acc"] - 0.1  # 200 images: 0.1 is 20
    real, calls = core.learn.train.mixed_step, []

    def interrupting(*args):
        calls.append(None)
        if len(calls) == 50 + 7:
            raise KeyboardInterrupt
        return real(*args)

    with monkeypatch.context() as patch:
        patch.setattr(core.learn.train, "mixed_step", interrupting)
        with pytest.raises(KeyboardInterrupt):
            train(mixed, tmp_path / "resumed", device="gpu")
    train(None, tmp_path / "resumed", resume=True, device="gpu")
    ours, ref = (load_checkpoint(tmp_path / d / "checkpoint.npz") for d in ("resumed", "whole"))
    for key in ref.params:
        assert ours.params[key].tobytes() == ref.params[key].tobytes(), key
    scaling = ("loss_scale", "scale_streak", "skipped")
    assert [ours.meta["run_state"][k] for k in scaling] == [
        ref.meta["run_state"][k] for k in scaling
    ]


# -- the commands --------------------------------------------------------------------------------


def test_evaluate_and_predict_under_device_gpu_say_what_they_say_on_the_cpu(tmp_path, capsys):
    said = {}
    for device in ("cpu", "gpu"):
        assert main.main(["evaluate", "--device", device, "--out", str(tmp_path / device)]) == 0
        assert main.main(["predict", "--device", device, "docs/digit.png"]) == 0
        said[device] = capsys.readouterr().out.replace(str(tmp_path / device), "OUT")
        set_executor(THREADS)
    assert said["gpu"] == said["cpu"]


@pytest.mark.parametrize("command", ["attack", "explain", "visualize"])
def test_the_tools_that_look_inside_a_model_run_under_device_gpu(command, tmp_path):
    argv = [command, "--device", "gpu", "--limit", "20", "--out", str(tmp_path / "out")]
    if command == "attack":
        argv += ["--method", "pgd", "--steps", "3", "--eps", "0,0.1"]
    if command == "visualize":
        argv += ["--class", "3"]
    assert main.main(argv) == 0
    assert any((tmp_path / "out").iterdir())
