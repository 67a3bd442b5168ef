"""Thread an input shape through a blueprint: every layer's shapes, with size budgets.

Shapes come from each kind's arithmetic (model/walk.py's ``walk_shapes``), so
no array is made: a blueprint or an input shape of absurd size is refused here,
with the layer and the numbers, before anything is allocated.
"""

import math

from data.errors import UserError
from model.blueprints import validate_blueprint
from model.walk import ShapeError, walk_shapes

# Budgets, in numbers of values (float32: 4 bytes each).
MAX_INPUT_VALUES = 1 << 24  # one example: 16.8 M values (a 4096x4096 picture)
MAX_ACTIVATION_VALUES = 1 << 24  # one layer's output for one example
MAX_PARAMETERS = 1 << 27  # the whole network: 134 M values, 512 MiB in float32


def trace_shapes(blueprint, input_shape):
    """A ShapeRow (model/walk.py) for every layer of ``blueprint`` (composites' layers after their node).

    input_shape: (C, H, W) for images, (D,) for vectors (no batch axis).
    Raises UserError naming the layer and the shapes when a layer cannot take its
    input, and naming the numbers when a size is over its budget.
    """
    blueprint = validate_blueprint(blueprint)
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        raise UserError(f"an input shape must be positive whole numbers, got {shape}")
    if math.prod(shape) > MAX_INPUT_VALUES:
        raise UserError(
            f"input shape {_x(shape)} has {math.prod(shape):,} values per example; "
            f"the limit is {MAX_INPUT_VALUES:,}"
        )
    try:
        rows = walk_shapes(blueprint, shape)
    except ShapeError as err:
        raise UserError(str(err)) from None
    total = 0
    for row in rows:
        if math.prod(row.out_shape) > MAX_ACTIVATION_VALUES:
            raise UserError(
                f"layer {row.label} ({row.spec['type']}) outputs {_x(row.out_shape)} = "
                f"{math.prod(row.out_shape):,} values per example; the limit is "
                f"{MAX_ACTIVATION_VALUES:,}"
            )
        count = sum(math.prod(p.shape) for p in row.params.values())
        total += count
        if total > MAX_PARAMETERS:
            raise UserError(
                f"layer {row.label} ({row.spec['type']}) brings the parameter count to "
                f"{total:,} ({count:,} its own); the limit is {MAX_PARAMETERS:,}"
            )
    return rows


def _x(shape):
    return "x".join(map(str, shape))
