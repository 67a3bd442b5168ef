"""The ``Dataset`` record every loader returns, and the small checks the data code shares."""

from pathlib import Path
from typing import NamedTuple

import numpy as np

from data.errors import UserError


class Dataset(NamedTuple):
    """A train/test pair of one dataset, as loaded from disk or generated.

    name:        the name ``load_dataset`` knows it by, e.g. ``"mnist"``.
    x_train:     images uint8 (N, C, H, W), pixels 0..255; for the toy sets
                 points float32 (N, D) instead (D = 2, 3, or 1 for "polynomial").
    y_train:     int64 (N,), class indices 0 .. len(class_names) - 1; for a
                 regression set, float32 (N,) targets.
    x_test:      like ``x_train``, (M, ...).
    y_test:      like ``y_train``, (M,).
    class_names: tuple of str, one per class, in label order; for a regression
                 set, one name for its one output (e.g. ``("y",)``).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple

    @property
    def input_shape(self):
        """Shape of one example: (C, H, W) for images, (D,) for toy points."""
        return self.x_train.shape[1:]

    @property
    def n_classes(self):
        """Number of classes, ``len(class_names)`` (1 for a regression set: its one output)."""
        return len(self.class_names)

    @property
    def regression(self):
        """True when the targets are floats to fit (MSE), not class labels."""
        return bool(np.issubdtype(self.y_train.dtype, np.floating))


def shown_path(path):
    """``path`` as str, relative to the working directory when it lies below it.

    Messages then read ``data/mnist/...`` rather than a long absolute path.
    """
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def check_labels(labels, n_classes, source, remedy):
    """Raise UserError unless every label lies in 0 .. n_classes - 1.

    labels:    integer array (N,).
    n_classes: int.
    source:    str naming the file the labels came from.
    remedy:    str, what the user should do about it.
    """
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = int(np.flatnonzero((labels < 0) | (labels >= n_classes))[0])
        raise UserError(
            f"{source}: label {int(labels[bad])} at index {bad} is outside 0..{n_classes - 1}; "
            f"{remedy}"
        )


def check_same_count(x, y, x_source, y_source, remedy):
    """Raise UserError unless ``x`` and ``y`` hold the same number of examples.

    x, y:               arrays whose first axis counts examples.
    x_source, y_source: str naming where each came from.
    remedy:             str, what the user should do about it.
    """
    if len(x) != len(y):
        raise UserError(
            f"{x_source} holds {len(x)} images but {y_source} holds {len(y)} labels: "
            f"the two files do not belong together; {remedy}"
        )
