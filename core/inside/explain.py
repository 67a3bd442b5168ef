"""Which pixels a prediction rests on: saliency, SmoothGrad, Grad-CAM and occlusion maps.

Every map is (N, H, W) for pictures (N, C, H, W) on the [0, 1] scale, one per picture, for
one class per picture (usually the predicted one); bigger means more important.

- saliency (Simonyan et al. 2014): |d score / d pixel|, the largest over the colour channels.
- SmoothGrad (Smilkov et al. 2017): the gradient averaged over copies of the picture with
  Gaussian noise added, then as saliency: less speckle, the same meaning.
- Grad-CAM (Selvaraju et al. 2017): a layer's maps A (C, h, w) weighted by the mean
  gradient of the score over each map, ``relu(sum_c mean(dA_c) A_c)``, resized to (H, W).
- occlusion (Zeiler and Fergus 2014): how much the class's probability drops when a
  square of the picture is painted black, averaged over the squares that cover a pixel.
"""

import numpy as np

from core.inside.gradients import class_score_gradient, layer_gradient
from core.learn.eval import predict_proba
from data.errors import UserError
from model.shapes import trace_shapes
from model.walk import KINDS

SMOOTHGRAD_SAMPLES = 25
SMOOTHGRAD_NOISE = 0.15  # standard deviation, in pixels: 15% of the [0, 1] range
OCCLUSION_PATCH = 6  # pixels per side of the black square
OCCLUSION_STRIDE = 2
OCCLUSION_CHUNK = 16  # pictures whose hidden copies are made at once


def saliency(model, pixels, classes):
    """|d score[classes] / d pixels|, largest over channels: (N, H, W)."""
    _, grad = class_score_gradient(model, pixels, classes)
    return np.abs(grad).max(axis=1)


def smoothgrad(model, pixels, classes, rng, samples=SMOOTHGRAD_SAMPLES, noise=SMOOTHGRAD_NOISE):
    """Saliency of the gradient averaged over ``samples`` noisy copies: (N, H, W).

    rng: numpy Generator for the noise, N(0, noise²) per pixel.
    """
    total = np.zeros_like(pixels)
    for _ in range(samples):
        noisy = (pixels + rng.normal(0.0, noise, size=pixels.shape)).astype(pixels.dtype)
        total += class_score_gradient(model, noisy, classes)[1]
    return np.abs(total / samples).max(axis=1)


def gradcam_layer(blueprint, input_shape):
    """The label of the layer Grad-CAM looks at by default: the last map (C, h, w) the network
    makes before it pools its maps away or flattens them (the last conv's output, after its
    batch norm and activation; in a residual net, the last block's)."""
    rows = [row for row in trace_shapes(blueprint, input_shape) if row.depth == 0]
    label = None
    for row in rows:
        if len(row.out_shape) != 3:
            break
        if not KINDS[row.spec["type"]].pools:
            label = row.label
    if label is None:
        raise UserError(
            "this network makes no maps (C, h, w) before its output: Grad-CAM needs a conv "
            "layer; choose --method saliency,occlusion (or smoothgrad)"
        )
    return label


def gradcam(model, pixels, classes, layer=None):
    """Grad-CAM maps (N, H, W) of layer ``layer`` (a top-level label; default: gradcam_layer).

    Returns (maps, layer): each map is >= 0, resized bilinearly from the layer's (h, w).
    """
    layer = layer or gradcam_layer(model.blueprint, pixels.shape[1:])
    activations, grads = layer_gradient(model, pixels, layer, classes)
    weights = grads.mean(axis=(2, 3), keepdims=True)  # (N, C, 1, 1)
    cam = np.maximum((weights * activations).sum(axis=1), 0)
    return resize(cam, pixels.shape[2:]), layer


def resize(maps, size):
    """Bilinear resize of (N, h, w) maps to (N, H, W) = size (pixel centres aligned)."""
    out = maps
    for axis, new in ((1, size[0]), (2, size[1])):
        old = out.shape[axis]
        where = np.clip((np.arange(new) + 0.5) * old / new - 0.5, 0, old - 1)
        low = np.floor(where).astype(int)
        high = np.minimum(low + 1, old - 1)
        t = (where - low).reshape([-1 if a == axis else 1 for a in range(3)])
        out = np.take(out, low, axis=axis) * (1 - t) + np.take(out, high, axis=axis) * t
    return out.astype(maps.dtype)


def occlusion_masks(size, patch=OCCLUSION_PATCH, stride=OCCLUSION_STRIDE):
    """(P, H, W) booleans, True inside each square of ``patch`` pixels, ``stride`` apart."""
    height, width = size
    tops = np.arange(0, max(height - patch, 0) + 1, stride)
    lefts = np.arange(0, max(width - patch, 0) + 1, stride)
    rows = (np.arange(height)[None, :] >= tops[:, None]) & (
        np.arange(height)[None, :] < tops[:, None] + patch
    )  # (T, H)
    cols = (np.arange(width)[None, :] >= lefts[:, None]) & (
        np.arange(width)[None, :] < lefts[:, None] + patch
    )  # (L, W)
    return (rows[:, None, :, None] & cols[None, :, None, :]).reshape(-1, height, width)


def occlusion(model, pixels, classes, patch=OCCLUSION_PATCH, stride=OCCLUSION_STRIDE):
    """The drop of each class's probability when a black square hides each place: (N, H, W).

    Each pixel gets the mean drop over the squares that cover it (negative where hiding
    the place makes the class more likely). The hidden copies of OCCLUSION_CHUNK pictures
    at a time are made at once, which bounds the memory for any N.
    """
    masks = occlusion_masks(pixels.shape[2:], patch, stride)  # (P, H, W)
    classes = np.asarray(classes)
    maps = [
        _occlusion_chunk(
            model, pixels[i : i + OCCLUSION_CHUNK], classes[i : i + OCCLUSION_CHUNK], masks
        )
        for i in range(0, len(pixels), OCCLUSION_CHUNK)
    ]
    return np.concatenate(maps)


def _occlusion_chunk(model, pixels, classes, masks):
    n, p = len(pixels), len(masks)
    hidden = np.where(masks[None, :, None], 0, pixels[:, None]).astype(pixels.dtype)
    both = np.concatenate([pixels, hidden.reshape(n * p, *pixels.shape[1:])])
    probs = predict_proba(model.params, model.blueprint, model.inputs(both))
    own = probs[np.arange(n), classes]  # (n,)
    hidden_own = probs[n:].reshape(n, p, -1)[np.arange(n), :, classes]  # (n, P)
    drops = own[:, None] - hidden_own
    return np.tensordot(drops, masks, axes=1) / np.maximum(masks.sum(axis=0), 1)


EXPLAIN_METHODS = ("saliency", "smoothgrad", "gradcam", "occlusion")


def explain(model, pixels, classes, methods, rng, layer=None):
    """{method: maps (N, H, W)} for each of ``methods`` (names in EXPLAIN_METHODS).

    rng: for SmoothGrad's noise; layer: Grad-CAM's layer (default: gradcam_layer).
    """
    maps = {}
    for method in methods:
        if method == "saliency":
            maps[method] = saliency(model, pixels, classes)
        elif method == "smoothgrad":
            maps[method] = smoothgrad(model, pixels, classes, rng)
        elif method == "gradcam":
            maps[method], _ = gradcam(model, pixels, classes, layer)
        else:
            maps[method] = occlusion(model, pixels, classes)
    return maps
