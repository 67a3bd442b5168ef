"""The one plain walk of a blueprint: a batch forward, its gradient back, shapes through it.

``walk_forward`` carries a batch through a list of specs and returns the output
with one cache per spec; ``walk_backward`` carries the gradient back through
those caches; ``walk_shapes`` threads one example's shape through the specs
without touching an array. Each step looks the spec's kind up in ``KINDS`` and
calls its record (model/layer_kinds.py). The walk knows nothing of threads: it is
the definition, and the ``PLAIN`` executor (model/executor.py); the ``THREADS``
executor (model/shards.py) runs it on shards of the batch.

A composite kind holds blueprints in its spec and is walked by these same
functions: the residual node ``{"type": "residual", "name": ..., "body": [...],
"shortcut": [...]}`` computes ``body(x) + shortcut(x)`` (an empty or missing
shortcut is the identity). Its cache is its branches' caches; its backward
sends ``dout`` into both branches and adds their input gradients. The arrays of
a composite's layers are keyed by their own names in the one flat dict.
"""

from typing import NamedTuple

from model.layer_kinds import LAYER_KINDS, GradCase, Hyper, LayerKind
from model.quantized_kinds import QUANTIZED_KINDS


class ShapeError(ValueError):
    """A layer cannot take its input; ``label`` names the (innermost) layer."""

    def __init__(self, label, kind, message):
        super().__init__(f"layer {label} ({kind}) {message}")
        self.label = label


class ShapeRow(NamedTuple):
    label: str  # the layer's name, or its type and its count among layers of that type
    spec: dict
    depth: int  # 0 for the blueprint's own layers, 1 inside a residual node, ...
    branch: str  # inside a composite: the spec key that holds it ("body", "shortcut"); else ""
    in_shape: tuple  # one example, no batch axis
    out_shape: tuple
    params: (
        dict  # {"<layer name>.<param>": Param} (empty for composites: their layers hold the arrays)
    )

    @property
    def param_shapes(self):
        """{"<layer name>.<param>": shape}"""
        return {key: p.shape for key, p in self.params.items()}


def local_params(params, spec):
    """The arrays of one layer, keyed by their local names ("W", "b", "gamma", ...)."""
    prefix = spec["name"] + "."
    found = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
    if not found:
        raise KeyError(f"layer {spec['name']}: no parameters named '{prefix}*'")
    return found


def _has_params(spec):
    return "name" in spec and KINDS[spec["type"]].params is not None


def walk_forward(params, x, specs, train=False, rng=None, keep_caches=True):
    """x through ``specs``: (out, [cache per spec, None unless keep_caches], {new running stats}).

    params: the flat dict {"<layer name>.<param>": array}; x (N, ...) the batch.
    The running statistics come keyed like params ({"bn1.running_mean": ...}).
    """
    caches, running_stats = [], {}
    for spec in specs:
        kind = KINDS[spec["type"]]
        if kind.nested:
            x, cache, stats = kind.forward(spec, params, x, train, rng)
        else:
            p = local_params(params, spec) if _has_params(spec) else {}
            x, cache, local = kind.forward(spec, p, x, train, rng)
            stats = {f"{spec['name']}.{k}": v for k, v in local.items()}
        caches.append(cache if keep_caches else None)
        running_stats.update(stats)
    return x, caches, running_stats


def walk_backward(dout, caches, specs, need_dx=True):
    """dout back through ``specs``: (dx, {"<layer name>.<param>": gradient}).

    caches: walk_forward's caches of the same specs. need_dx: False when the
    first spec's input is the data (its dx is then skipped where a layer can).
    """
    grads = {}
    for i in reversed(range(len(specs))):
        spec = specs[i]
        kind = KINDS[spec["type"]]
        dout, local = kind.backward(spec, dout, caches[i], need_dx or i > 0)
        if not kind.nested:
            local = {f"{spec['name']}.{k}": g for k, g in local.items()}
        grads.update(local)
    return dout, grads


def walk_shapes(specs, in_shape, depth=0, counts=None, branch=""):
    """ShapeRows of ``specs`` (and of composites' layers, after their node) fed ``in_shape``.

    No array is made: shapes come from each kind's ``out_shape`` arithmetic.
    Raises ShapeError naming the layer that cannot take its input.
    """
    counts = {} if counts is None else counts
    rows, shape = [], tuple(in_shape)
    for spec in specs:
        kind = KINDS[spec["type"]]
        counts[spec["type"]] = counts.get(spec["type"], 0) + 1
        label = spec.get("name") or f"{spec['type']}{counts[spec['type']]}"
        if kind.nested:
            out, inner = kind.out_shape(spec, shape, depth, counts)
        else:
            try:
                params = {
                    f"{spec['name']}.{k}": p for k, p in kind.param_specs(spec, shape).items()
                }
                out, inner = tuple(kind.out_shape(spec, shape)), []
            except (ValueError, IndexError) as err:
                raise ShapeError(
                    label, spec["type"], f"cannot take input of shape {shape}: {err}"
                ) from None
        rows.append(ShapeRow(label, spec, depth, branch, shape, out, {} if kind.nested else params))
        rows.extend(inner)
        shape = out
    return rows


# -- the residual node -------------------------------------------------------------------------


def _residual_forward(spec, params, x, train, rng, walk=walk_forward):
    """body(x) + shortcut(x). ``walk``: how to walk a branch (an executor's forward, such as
    model/shards.py's sharded_forward, which has walk_forward's arguments and results)."""
    body, body_caches, body_stats = walk(params, x, spec["body"], train, rng)
    short, short_caches, short_stats = walk(params, x, spec["shortcut"], train, rng)
    return body + short, (body_caches, short_caches), {**body_stats, **short_stats}


def _residual_backward(spec, dout, cache, need_dx, walk_back=walk_backward):
    """dout into both branches; dx is the sum of their input gradients. ``walk_back``: the
    backward of the executor whose forward walked the branches."""
    body_caches, short_caches = cache
    dbody, grads = walk_back(dout, body_caches, spec["body"], need_dx)
    dshort, short_grads = walk_back(dout, short_caches, spec["shortcut"], need_dx)
    grads.update(short_grads)
    return (dbody + dshort if need_dx else None), grads


def _residual_shapes(spec, in_shape, depth, counts):
    """(out_shape, inner ShapeRows): the body's and the shortcut's shapes must agree."""
    body = walk_shapes(spec["body"], in_shape, depth + 1, counts, "body")
    short = walk_shapes(spec["shortcut"], in_shape, depth + 1, counts, "shortcut")
    body_out = _last_out(body, in_shape, depth + 1)
    short_out = _last_out(short, in_shape, depth + 1)
    if body_out != short_out:
        what = "the identity shortcut passes" if not spec["shortcut"] else "its shortcut gives"
        raise ShapeError(
            spec["name"],
            "residual",
            f"cannot add its branches: its body gives {body_out} but {what} {short_out}; a "
            "projection shortcut (for example a 1x1 conv with the body's stride and filters, "
            "then a batchnorm) makes them agree",
        )
    return body_out, body + short


def _last_out(rows, in_shape, depth):
    """The output shape of a list of specs: its last top-level row's, or its input's."""
    outs = [row.out_shape for row in rows if row.depth == depth]
    return outs[-1] if outs else tuple(in_shape)


def _is_blueprint(value):
    return isinstance(value, list) and all(isinstance(spec, dict) for spec in value)


RESIDUAL = LayerKind(
    hyper={
        "body": Hyper(
            check=lambda v: _is_blueprint(v) and bool(v), wanted="a non-empty list of specs"
        ),
        "shortcut": Hyper(default=[], check=_is_blueprint, wanted="a list of specs"),
    },
    nested=("body", "shortcut"),
    out_shape=_residual_shapes,
    forward=_residual_forward,
    backward=_residual_backward,
    gradcheck=(
        GradCase(
            label="residual, identity shortcut",
            hyper={
                "body": [
                    {"type": "conv", "name": "c1", "filters": 2, "kernel": 3, "pad": 1},
                    {"type": "tanh"},
                    {"type": "conv", "name": "c2", "filters": 2, "kernel": 3, "pad": 1},
                ]
            },
            in_shape=(2, 2, 5, 5),
        ),
        GradCase(
            label="residual, projection shortcut",
            hyper={  # tanh before each batchnorm: a bias right before one gets no gradient
                "body": [
                    {
                        "type": "conv",
                        "name": "c1",
                        "filters": 3,
                        "kernel": 3,
                        "pad": 1,
                        "stride": 2,
                    },
                    {"type": "tanh"},
                    {"type": "batchnorm", "name": "n1"},
                ],
                "shortcut": [
                    {"type": "conv", "name": "p1", "filters": 3, "kernel": 1, "stride": 2},
                    {"type": "tanh"},
                    {"type": "batchnorm", "name": "n2"},
                ],
            },
            in_shape=(3, 2, 5, 5),
        ),
    ),
)

KINDS = {**LAYER_KINDS, **QUANTIZED_KINDS, "residual": RESIDUAL}
"""Every layer type a blueprint may use, by its ``type``."""


def whole_batch(spec):
    """True when the layer (or a layer inside it) must see the whole batch in training."""
    kind = KINDS[spec["type"]]
    return kind.whole_batch or any(whole_batch(s) for key in kind.nested for s in spec[key])


def iter_layers(specs):
    """Every spec, composites' inner specs after their node (pre-order)."""
    for spec in specs:
        yield spec
        for key in KINDS[spec["type"]].nested:
            yield from iter_layers(spec[key])


def quantized_layers(specs):
    """The names of the int8 layers (model/quantized_kinds.py) of validated ``specs``: a
    quantized model, for inference only, when not empty."""
    return [spec["name"] for spec in iter_layers(specs) if KINDS[spec["type"]].quantized]
