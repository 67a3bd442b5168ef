"""The forward pass of a whole network: walk the blueprint (model/walk.py).

The walk runs on shards of the batch, on worker threads (model/shards.py).
"""

from model.blueprints import validate_blueprint
from model.shapes import trace_shapes
from model.shards import sharded_forward
from model.walk import walk_forward


def forward(params, x, blueprint, train=False, rng=None, keep_caches=True):
    """Scores of a batch.

    params: flat dict {"<layer name>.<param>": array} (see initialize_parameters).
    x: (N, C, H, W) images or (N, D) vectors, float32 (or float64 for checks).
    train: batch statistics for batch norm, random masks for dropout (needs ``rng``).
    keep_caches: False for inference, to free each layer's cache as soon as it is used.
    Returns scores (N, K) and ForwardCaches(segments, running_stats). Nothing is
    modified in place: the training loop merges ``running_stats`` into its params.
    """
    return sharded_forward(params, x, validate_blueprint(blueprint), train, rng, keep_caches)


def forward_activations(params, x, blueprint):
    """The output of each of the blueprint's layers for a batch, in inference mode.

    Returns [(label, out), ...], one per layer of the blueprint (a residual
    node's output is its sum), labelled as in ``summary``.
    """
    rows = [row for row in trace_shapes(blueprint, x.shape[1:]) if row.depth == 0]
    outputs = []
    for row in rows:
        x, _, _ = walk_forward(params, x, [row.spec], keep_caches=False)
        outputs.append((row.label, x))
    return outputs
