"""A blueprint as a table a person can read: layer, output shape, parameter count."""

import math

import numpy as np
import pandas as pd

from model.shapes import trace_shapes


def summary_table(blueprint, input_shape, params=None):
    """DataFrame with columns layer, type, output shape, params (one row per layer).

    The layers inside a residual node follow it, indented by two spaces per
    level; a shortcut's layers say so in the type column. Given the arrays
    (``params``, {"<layer name>.<param>": array}), a column "zero weights" says what
    share of each layer's ``W`` is exactly zero (a pruned model's sparsity).
    """
    rows = trace_shapes(blueprint, input_shape)
    table = pd.DataFrame(
        {
            "layer": ["  " * r.depth + r.label for r in rows],
            "type": [
                r.spec["type"] + (" (shortcut)" if r.branch == "shortcut" else "") for r in rows
            ],
            "output shape": ["x".join(map(str, r.out_shape)) for r in rows],
            "params": [sum(math.prod(p.shape) for p in r.params.values()) for r in rows],
        }
    )
    if params is not None:
        weights = [params.get(f"{r.label}.W") if r.params else None for r in rows]
        table["zero weights"] = [
            "" if w is None else f"{100 * np.count_nonzero(w == 0) / w.size:.1f}%" for w in weights
        ]
    return table


def format_summary(blueprint, input_shape, title="", params=None):
    """The summary table as text, with the input shape and the total parameter count.

    params: the arrays of a model file, to show each layer's share of zero weights.
    """
    table = summary_table(blueprint, input_shape, params)
    total = int(table["params"].sum())
    head = f"{title}  input {'x'.join(map(str, input_shape))}\n" if title else ""
    table["layer"] = table["layer"].str.ljust(table["layer"].str.len().max())  # left-aligned
    text = table.to_string(index=False)
    return f"{head}{text}\ntotal parameters: {total:,}"
