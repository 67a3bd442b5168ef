"""Model files loaded with every field checked: model/params_io.py checks the arrays, the
blueprint and the meta (model/meta_checks.py); the run's config is checked here, by the
training options' own checks (core/learn/config.py ``checked_config``), which the model
floor below does not know. Commands and rooms load model files through these functions.
"""

import os

from core.learn.config import checked_config
from model import params_io


def load_model(path):
    """``params_io.load_model``, its ``meta["config"]`` checked as the train options are.

    Returns the Model; raises a one-line UserError naming the file and the field."""
    model = params_io.load_model(path)
    return _with_checked_config(model, path)


def load_float_model(path, purpose):
    """``params_io.load_float_model`` (a quantized model refused, ``purpose`` naming what
    needs the float arrays), its config checked as ``load_model`` checks it."""
    model = params_io.load_float_model(path, purpose)
    return _with_checked_config(model, path)


def _with_checked_config(model, path):
    """``model``, once its config is checked (the dict itself is kept as the file has it: a
    key it lacks is one the program reads with its default)."""
    checked_config(model.meta["config"], os.fspath(path))
    return model
