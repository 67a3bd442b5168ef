"""A blueprint as a table a person can read: layer, output shape, parameter count."""

import numpy as np
import pandas as pd

from model.shapes import trace_shapes


def summary_table(blueprint, input_shape):
    """DataFrame with columns layer, type, output shape, params (one row per layer)."""
    rows = trace_shapes(blueprint, input_shape)
    return pd.DataFrame(
        {
            "layer": [r.label for r in rows],
            "type": [r.spec["type"] for r in rows],
            "output shape": ["x".join(map(str, r.out_shape)) for r in rows],
            "params": [sum(int(np.prod(s)) for s in r.param_shapes.values()) for r in rows],
        }
    )


def format_summary(blueprint, input_shape, title=""):
    """The summary table as text, with the input shape and the total parameter count."""
    table = summary_table(blueprint, input_shape)
    total = int(table["params"].sum())
    head = f"{title}  input {'x'.join(map(str, input_shape))}\n" if title else ""
    return f"{head}{table.to_string(index=False)}\ntotal parameters: {total:,}"
