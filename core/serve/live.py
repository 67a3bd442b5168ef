"""The live page's state: one digit classifier, loaded once, run on one picture per request.

A picture is prepared exactly as ``predict`` prepares it (``data.digit_image``, then
``core.report.model_inputs``) and its probabilities come from the same
``core.learn.eval.predict_proba``, so the page and ``predict`` agree to the last bit on the
same file. The page also gets each layer's output (``model.forward.forward_activations``)
and the saliency map of the predicted class (``core.inside.explain.saliency``).
"""

import threading
import time
from pathlib import Path

import numpy as np

from core.inside.explain import saliency
from core.learn.eval import predict_scores, softmax
from core.learn.model_file import load_float_model
from core.learn.ood import verdict
from core.report import DIGIT_SHAPE, check_digit_model, model_inputs
from core.serve.figures import FIGURES, run_figures
from core.serve.pictures import INFERNO, VIRIDIS, levels, mosaic, png_data_url
from data.digit_image import digit_image_from_bytes
from model.forward import forward_activations
from model.shapes import trace_shapes
from model.summary import format_summary

PICTURE_NAME = "the picture"  # how error messages name what the browser sent


class LivePage:
    """What the live page asks of one model file: its Model tab, and the answer to a picture.

    params_path: the model file (.npz). Raises UserError for a file that cannot be read,
    a quantized (int8) model (the saliency map needs the float model's gradients), or a
    model that is not a 1x28x28 digit classifier.
    Holds the Model (model/trained.py), the run's figures {file name: PNG bytes} and a lock.
    """

    def __init__(self, params_path):
        self.source = str(params_path)
        self.model = load_float_model(params_path, "the live page's saliency map")
        check_digit_model(self.model.meta, self.source, "serve", ", such as best_params.npz")
        self._types = {
            row.label: row.spec["type"]
            for row in trace_shapes(self.model.blueprint, DIGIT_SHAPE)
            if row.depth == 0
        }
        self.figures = run_figures(params_path)
        # One picture at a time: the forward pass already spreads over every core, and
        # its worker pool is shared by the whole process.
        self._lock = threading.Lock()

    def model_tab(self):
        """What the Model tab shows: the layer table, the classes and the figures' names."""
        meta = self.model.meta
        return {
            "model": Path(self.source).name,
            "summary": format_summary(
                self.model.blueprint, DIGIT_SHAPE, Path(self.source).name, self.model.params
            ),
            "classes": meta["class_names"],
            "dataset": meta.get("dataset"),
            "epoch": meta.get("epoch"),
            "figures": [
                {"title": title, "url": f"/figures/{name}"}
                for name, title in FIGURES.items()
                if name in self.figures
            ],
        }

    def predict(self, picture):
        """Everything the page shows for one picture.

        picture: the bytes of a PNG or JPEG file.
        Returns a JSON-ready dict: "class" (name) and "index" of the prediction,
        "not_a_digit" (None, or the words saying the picture does not look like the
        model's training images: core/learn/ood.py),
        "classes", "probabilities" (K floats), "input" (the prepared 28x28 image as
        "pixels", uint8 rows, and "png"), "layers" (per top-level layer: "name" as in
        ``summary``, "type", "shape", "png" of its maps, "tiles" (rows, columns), "range"
        of its colour scale), "saliency" ("png", "peak") and "ms", the time it took.
        Raises UserError (naming "the picture") for a picture with no digit to read.
        """
        with self._lock:
            started = time.perf_counter()
            image = digit_image_from_bytes(picture, PICTURE_NAME)
            x = model_inputs(image[None, None], self.model.meta, self.source)
            logits = predict_scores(self.model.params, self.model.blueprint, x)[0]
            words = verdict(self.model, logits, image, self.source)
            probs = softmax(logits)
            best = int(np.argmax(probs))
            activations = forward_activations(self.model.params, x, self.model.blueprint)
            pixels = (image[None, None] / np.float32(255)).astype(np.float32)
            heat = saliency(self.model, pixels, np.array([best]))[0]
            names = self.model.meta["class_names"]
            answer = {
                "class": names[best],
                "not_a_digit": words,  # None, or "this does not look like a digit"
                "index": best,
                "classes": names,
                "probabilities": [float(p) for p in probs],
                "input": {"pixels": image.tolist(), "png": png_data_url(image)},
                "layers": [self._layer(label, out[0]) for label, out in activations],
                "saliency": {
                    "png": png_data_url(levels(heat, 0.0, float(heat.max())), INFERNO),
                    "peak": float(heat.max()),
                },
            }
            answer["ms"] = round(1000 * (time.perf_counter() - started), 1)
            return answer

    def _layer(self, label, activation):
        """One layer's entry of ``predict``'s "layers"."""
        grid, tiles, (low, high) = mosaic(activation)
        return {
            "name": label,
            "type": self._types[label],
            "shape": list(activation.shape),
            "png": png_data_url(grid, VIRIDIS),
            "tiles": list(tiles),
            "range": [low, high],
        }
