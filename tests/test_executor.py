"""The walk and its executors: threads over shards of the batch (model/shards.py) give the
plain walk's numbers (model/executor.py PLAIN), bit for bit on one thread and up to float
rounding on more; an executor given to forward is the one that runs the forward and the
backward pass; set_executor changes the default."""

import numpy as np
import pytest

from core.learn.loss import softmax_cross_entropy
from model.backward import backward, input_gradient
from model.blueprints import PRESETS
from model.executor import PLAIN, Executor
from model.forward import forward, get_executor, set_executor
from model.initialize_parameters import initialize_parameters
from model.shards import THREADS, get_threads, set_threads
from model.walk import walk_backward, walk_forward

IMAGE = (1, 12, 12)  # small, and every image preset can take it
BATCH = 7  # cut unevenly into 2 or 3 shards


@pytest.fixture
def restore_threads():
    """Give the model back the thread count it had before the test."""
    before = get_threads()
    yield
    set_threads(before)


def passes(name, executor, train):
    """(scores, running stats, parameter gradients, input gradient) of one float64 batch of
    ``name`` run on ``executor``, dropout's masks drawn from a fixed seed."""
    blueprint = PRESETS[name]()
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, IMAGE, rng, dtype=np.float64)
    x = rng.standard_normal((BATCH, *IMAGE))
    y = rng.integers(0, 10, BATCH)
    masks = np.random.default_rng(3)
    scores, caches = forward(params, x, blueprint, train, masks, executor=executor)
    dscores = softmax_cross_entropy(scores, y)[1]
    grads = backward(dscores, caches, blueprint)
    _, caches = forward(params, x, blueprint, train, np.random.default_rng(3), executor=executor)
    return scores, caches.running_stats, grads, input_gradient(dscores, caches, blueprint)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("name", ["minivgg", "minivgg_bn_dropout", "resnet"])
def test_threads_over_shards_give_the_plain_walk(restore_threads, name, threads, train):
    plain = passes(name, PLAIN, train)
    set_threads(threads)
    sharded = passes(name, THREADS, train)
    for got, wanted in zip(sharded, plain, strict=True):
        if isinstance(wanted, dict):
            assert got.keys() == wanted.keys()
            pairs = [(got[key], wanted[key]) for key in wanted]
        else:
            pairs = [(got, wanted)]
        for a, b in pairs:
            assert a.dtype == b.dtype == np.float64 and a.shape == b.shape
            if threads == 1:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def counting(log):
    """The plain walk, each call of its forward and backward appended to ``log``."""

    def forward_walk(*args):
        log.append("forward")
        return walk_forward(*args)

    def backward_walk(*args):
        log.append("backward")
        return walk_backward(*args)

    return Executor("counting", forward_walk, backward_walk)


def test_an_executor_given_to_forward_runs_both_passes():
    log = []
    scores = passes("minivgg_bn_dropout", counting(log), train=True)[0]
    assert log == ["forward", "backward", "forward", "backward"]
    plain = passes("minivgg_bn_dropout", PLAIN, train=True)
    np.testing.assert_array_equal(scores, plain[0])


def test_set_executor_changes_the_default_and_backward_follows_the_caches():
    assert get_executor() is THREADS
    log = []
    set_executor(counting(log))
    try:
        scores, caches = forward(*minivgg_inputs(), train=False)
    finally:
        set_executor(THREADS)
    assert log == ["forward"] and caches.executor.name == "counting"
    backward(np.ones_like(scores), caches, PRESETS["minivgg"]())  # after the default is back
    assert log == ["forward", "backward"]


def minivgg_inputs():
    blueprint = PRESETS["minivgg"]()
    rng = np.random.default_rng(0)
    params = initialize_parameters(blueprint, IMAGE, rng)
    return params, rng.standard_normal((2, *IMAGE)).astype(np.float32), blueprint
