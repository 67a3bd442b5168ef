"""The GPU executor: the plain walk on CuPy arrays (``--device gpu``).

``GPU`` (an Executor, model/executor.py) runs walk_forward and walk_backward of model/walk.py
on the GPU, the whole batch at once: the layers compute with the array library of their
input (layers/arraylib.py), so the walk is the CPU's, line for line. Threads over shards are
the CPU's way to use its cores; a GPU gets its parallelism inside each array operation.

Where the results go follows where the batch came from:
- a batch on the GPU (the training loop places its data there once) is walked there, and its
  output, caches, running statistics and gradients stay there;
- a NumPy batch (evaluate, predict, the tools that look inside a model and the live page under
  ``--device gpu``) is copied there with the parameters, walked, and its results are copied
  back: the caller sees NumPy arrays, as on the CPU.
model/forward.py walks a batch on the GPU with this executor whatever the current one is.
"""

from typing import NamedTuple

import numpy as np

from layers.arraylib import array_module, cupy, to_numpy
from model.executor import Executor
from model.walk import walk_backward, walk_forward


class GpuCaches(NamedTuple):
    """The GPU executor's caches of a pass."""

    to_host: bool  # the batch was a NumPy array: the backward's results go back to NumPy
    walk_caches: list  # walk_forward's caches, on the GPU


def gpu_forward(params, x, specs, train=False, rng=None, keep_caches=True):
    """walk_forward of ``x`` on the GPU: (out, GpuCaches, {new running stats}).

    params: {key: array}, NumPy arrays are copied to the GPU (for this pass only).
    """
    to_host = array_module(x) is np
    on_device = {key: cupy.asarray(a) for key, a in params.items()}
    out, caches, stats = walk_forward(on_device, cupy.asarray(x), specs, train, rng, keep_caches)
    if to_host:
        out, stats = to_numpy(out), {key: to_numpy(a) for key, a in stats.items()}
    return out, GpuCaches(to_host, caches), stats


def gpu_backward(dout, caches, specs, need_dx=True):
    """walk_backward on the GPU through gpu_forward's caches: (dx or None, grads)."""
    dx, grads = walk_backward(cupy.asarray(dout), caches.walk_caches, specs, need_dx)
    if caches.to_host:
        dx = None if dx is None else to_numpy(dx)
        grads = {key: to_numpy(g) for key, g in grads.items()}
    return dx, grads


GPU = Executor("the plain walk of the whole batch on the GPU (CuPy)", gpu_forward, gpu_backward)
"""The walk on the GPU: what --device gpu makes the current executor."""
