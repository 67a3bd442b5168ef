"""Who runs the walk: an executor, which the forward pass is given.

The walk (model/walk.py) is the definition of a network's passes: ``walk_forward`` carries
a batch through the specs in order, ``walk_backward`` carries its gradient back. An
executor runs that walk its own way, with the same meaning and results (up to float
rounding, when it adds things in another order). It is two functions with the walk's
own signatures:

    forward(params, x, specs, train, rng, keep_caches) -> (out, caches, new running stats)
    backward(dout, caches, specs, need_dx) -> (dx or None, {"<layer name>.<param>": gradient})

``caches`` is the executor's own record of the pass, for its backward alone. ``PLAIN`` is
the walk itself: the whole batch, on the calling thread. ``THREADS`` (model/shards.py)
runs it on shards of the batch, one thread each, and is the default of model/forward.py
(``set_executor`` chooses another). ``GPU`` (model/gpu.py) runs the plain walk on a GPU,
with CuPy arrays. Another way to run the walk is one more module that builds an ``Executor``.
"""

from collections.abc import Callable
from typing import NamedTuple

from model.walk import walk_backward, walk_forward


class Executor(NamedTuple):
    """A way to run the walk: ``forward`` and ``backward`` as in the module docstring."""

    name: str  # what it is, in a few words
    forward: Callable
    backward: Callable


PLAIN = Executor("the plain walk of the whole batch", walk_forward, walk_backward)
"""The definition: walk_forward and walk_backward themselves."""
