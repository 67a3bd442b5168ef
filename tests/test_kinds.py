"""Two checks that hold for every layer kind, whatever kinds are added.

1. No code outside the kind records tests a layer's type by name: what folding, pruning,
   quantization, Grad-CAM and the figures need to know of a kind is in its record
   (model/layer_kinds.py), read as ``KINDS[spec["type"]].pruned`` and the like.
2. Each kind's declared ``out_shape`` is the shape its real forward returns (stax_test's
   ``_CheckShapeAgreement``), for a few input shapes.
"""

import ast
from pathlib import Path

import numpy as np
import pytest

from model.blueprints import validate_blueprint
from model.walk import KINDS, ShapeError, walk_forward, walk_shapes

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("core", "model", "benchmarks", "main.py")
# Where kinds are named: their records, and the exporter's table of each kind's ONNX nodes.
RECORDS = ("model/layer_kinds.py", "model/quantized_kinds.py", "core/export/kinds.py")


# -- 1. no layer-type literal outside the records ------------------------------------------


def _strings(node):
    """The strings of a literal str, or of a tuple, list or set of them; else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set) and node.elts:
        if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            return {e.value for e in node.elts}
    return None


def _is_type_lookup(node):
    """``<anything>["type"]`` or ``<anything>.get("type", ...)``."""
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "type"
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "type"
    )


def _type_test(node, names):
    """Why ``node`` tests a layer type by name, or None.

    Caught: a layer's ``["type"]`` (or ``.get("type")``) compared with, or matched
    against, a string or strings; any comparison with the name of a kind (``kind ==
    "conv"``); and a tuple, list, set or dict keyed by kind names alone (``POOLING =
    ("maxpool", "avgpool")``, ``{"conv": "qconv"}``), which stand for such a test.
    """
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        literals = [s for s in map(_strings, operands) if s is not None]
        if literals and any(map(_is_type_lookup, operands)):
            return "compares a layer's type with a literal"
        if any(s & names for s in literals):
            return "compares with a layer type's name"
    if isinstance(node, ast.Match) and _is_type_lookup(node.subject):
        return "matches a layer's type against cases"
    if isinstance(node, ast.Tuple | ast.List | ast.Set) and (found := _strings(node)):
        if found <= names:
            return "lists layer types by name"
    if isinstance(node, ast.Dict) and node.keys and all(k is not None for k in node.keys):
        keys = _strings(ast.Tuple(elts=list(node.keys)))
        if keys is not None and keys <= names:
            return "is keyed by layer types"
    return None


def type_tests(source, names):
    """[(line, why, code)] of every layer-type test by name in Python ``source``."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if why := _type_test(node, names):
            found.append((node.lineno, why, ast.get_source_segment(source, node)))
    return sorted(found)


def scanned_files():
    for entry in SCANNED:
        path = ROOT / entry
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            if file.relative_to(ROOT).as_posix() not in RECORDS:
                yield file


@pytest.mark.parametrize(
    "code",
    [
        'if spec["type"] == "conv": pass',
        'x = first["type"] != "fc"',
        'ok = spec.get("type") in ("conv", "fc")',
        'ok = spec["type"] == "scale"',  # a kind not registered yet
        'ok = kind == "batchnorm"',
        'ok = "residual" == node["type"]',
        'POOLING = ("maxpool", "avgpool", "global_avgpool")',
        'QUANTIZED_FROM = {"conv": "qconv", "fc": "qfc"}',
        'match spec["type"]:\n    case "conv":\n        pass',
    ],
)
def test_the_scan_finds_a_layer_type_test_by_name(code):
    assert type_tests(code, set(KINDS)), code


@pytest.mark.parametrize(
    "code",
    [
        'if KINDS[spec["type"]].folds_batchnorm: pass',
        'label = spec.get("name", spec["type"])',
        'blueprint = [{"type": "conv", "name": "c1", "filters": 4, "kernel": 3}]',
        'ok = args.method == "gradcam"',
        'keys = ("W", "b")',
    ],
)
def test_the_scan_leaves_records_use_and_blueprint_data_alone(code):
    assert not type_tests(code, set(KINDS)), code


def test_no_layer_type_is_tested_by_name_outside_the_records():
    files = list(scanned_files())
    assert any(f.name == "report.py" for f in files) and any(f.name == "main.py" for f in files)
    found = [
        f"{file.relative_to(ROOT)}:{line}: {why}: {code}"
        for file in files
        for line, why, code in type_tests(file.read_text(encoding="utf-8"), set(KINDS))
    ]
    assert not found, "ask the kind's record instead:\n" + "\n".join(found)


# -- 2. every kind's declared shapes agree with its forward ---------------------------------


def _cases(name, kind):
    """The kind's gradient-check cases; an int8 kind's are those of the float kind it
    replaces (it has none of its own: it is never trained)."""
    if kind.gradcheck:
        return kind.gradcheck
    return next(f.gradcheck for f in KINDS.values() if f.quantized_as == name)


def _variants(shape):
    """The case's input shape (batch axis first), and two others: a bigger batch and
    bigger trailing axes (an image's channels stay, as grouped convolutions need)."""
    n, c, *rest = shape
    if not rest:
        return [tuple(shape), (n + 1, c + 1), (n, c + 3)]
    return [tuple(shape), (n + 1, c, *(s + 1 for s in rest)), (n, c, *(s + 3 for s in rest))]


def _arrays(rows, rng):
    """Random arrays for the layers' Params: int8 weights, positive scales, floats."""
    params = {}
    for row in rows:
        for key, p in row.params.items():
            if p.dtype == "int8":
                params[key] = rng.integers(-127, 128, p.shape).astype(np.int8)
            elif p.positive or not p.trainable:
                params[key] = rng.uniform(0.5, 1.5, p.shape).astype(np.float32)
            else:
                params[key] = rng.standard_normal(p.shape).astype(np.float32)
    return params


SHAPE_CASES = [
    pytest.param(name, case, id=f"{name}: {case.label}")
    for name, kind in KINDS.items()
    for case in _cases(name, kind)
]


def test_every_kind_has_cases_to_check():
    assert {case.values[0] for case in SHAPE_CASES} == set(KINDS)


@pytest.mark.parametrize(("name", "case"), SHAPE_CASES)
def test_declared_out_shape_is_the_forward_output_shape(name, case):
    rng = np.random.default_rng(0)
    specs = validate_blueprint([{"type": name, "name": "layer", **case.hyper}])
    modes = (False,) if KINDS[name].quantized else (False, True)
    checked = 0
    for in_shape in _variants(case.in_shape):
        try:
            rows = walk_shapes(specs, in_shape[1:])
        except ShapeError:
            continue  # the kind refuses this input: nothing to compare
        params = _arrays(rows, rng)
        x = rng.standard_normal(in_shape).astype(np.float32)
        for train in modes:
            out, _, _ = walk_forward(params, x, specs, train, np.random.default_rng(1))
            assert out.shape == (in_shape[0], *rows[0].out_shape), (in_shape, train)
            checked += 1
    assert checked >= 2 * len(modes)
