"""Data augmentation: pure, vectorized functions of (images, rng) on float (N, C, H, W) batches.

Natural images (CIFAR-10 style): ``random_crop`` (pad, then a random crop back to H x W),
``random_flip`` (left-right mirror) and ``random_erasing`` (cutout: a random rectangle set
to ``fill``). Each draws one row of random numbers per image and builds its result from
index arrays or masks over the whole batch at once, never a loop over images.

Warps (digits): ``random_affine`` and ``elastic_distortion``. Each output pixel reads the input at a source position computed for it (the inverse
map), with bilinear interpolation; positions outside the image read ``fill``. All
images of a batch are warped at once: coordinates are (N, H, W) arrays and the
four neighbours are gathered with one fancy index each.

Test-time augmentation (``evaluate`` and ``predict --tta``): ``tta_views``, the fixed copies of a
batch whose predictions are averaged: the batch itself, mirrored and/or shifted by one pixel.

Coordinates: x is the column (to the right), y the row (downwards); the centre of
rotation and scaling is the image centre ((W - 1) / 2, (H - 1) / 2).

Images on the GPU (CuPy arrays, ``--device gpu``) are augmented there: the functions the
training loop uses take ``xp``, the images' array library (numpy by default; data/ imports
nothing of layers/, where the training loop finds it). The random numbers are drawn from the
NumPy ``rng`` whatever ``xp`` is, and moved to the images: a GPU run augments as a CPU run.
"""

import math

import numpy as np

from data.checks import check_real, check_whole
from data.errors import UserError

_ERASING_ATTEMPTS = 10  # rectangles tried per image before giving up, as in torchvision


def random_affine(
    images, rng, max_shift=2.0, max_rotation_deg=10.0, scale_range=(0.9, 1.1), fill=0.0, xp=np
):
    """Shift, rotate and scale each image by its own random amounts.

    images:           float (N, C, H, W).
    rng:              np.random.Generator.
    max_shift:        float >= 0; shifts dx, dy uniform in [-max_shift, max_shift] pixels.
    max_rotation_deg: float >= 0; angle uniform in [-max, max] degrees.
    scale_range:      (low, high), 0 < low <= high; scale uniform in [low, high].
    fill:             float or (C,) array, the value of pixels uncovered by the warp
                      (pass the normalized value of a black pixel).
    xp:               the array library of ``images`` (numpy, or cupy).
    Returns an array shaped and typed like ``images``.
    """
    low, high = scale_range
    if not (max_shift >= 0 and max_rotation_deg >= 0 and 0 < low <= high):
        raise UserError(
            f"random_affine: need max_shift >= 0, max_rotation_deg >= 0 and "
            f"0 < scale_range[0] <= scale_range[1], got max_shift={max_shift}, "
            f"max_rotation_deg={max_rotation_deg}, scale_range={scale_range}"
        )
    n = _check_images(images, xp)
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg, n))
    scale = rng.uniform(low, high, n)
    shift = rng.uniform(-max_shift, max_shift, (n, 2))
    return affine_warp(images, angle, scale, shift, fill, xp)


def affine_warp(images, angle, scale, shift, fill=0.0, xp=np):
    """Rotate by ``angle``, scale by ``scale`` about the centre, then shift, per image.

    An output pixel p reads the input at ``c + R(-angle) (p - c - shift) / scale``.

    images: float (N, C, H, W).
    angle:  (N,) radians; positive turns the content counter-clockwise on screen
            (a quarter turn equals ``np.rot90(image)``).
    scale:  (N,) > 0; above 1 enlarges the content.
    shift:  (N, 2) pixels (dx, dy); content moves right by dx and down by dy.
    fill:   float or (C,) array, the value of pixels that come from outside.
    xp:     the array library of ``images``; angle, scale and shift are NumPy arrays.
    Returns an array shaped and typed like ``images``.
    """
    _check_images(images, xp)
    _, _, h, w = images.shape
    dtype = images.dtype
    cx, cy = (w - 1) / 2, (h - 1) / 2
    scale = xp.asarray(np.asarray(scale, dtype)[:, None, None])
    shift = xp.asarray(np.asarray(shift, dtype))
    cos = xp.asarray(np.cos(angle).astype(dtype)[:, None, None])
    sin = xp.asarray(np.sin(angle).astype(dtype)[:, None, None])
    u = (xp.arange(w, dtype=dtype) - cx - shift[:, 0, None, None]) / scale  # (N, 1, W)
    v = (xp.arange(h, dtype=dtype)[:, None] - cy - shift[:, 1, None, None]) / scale  # (N, H, 1)
    src_x = cos * u - sin * v + dtype.type(cx)  # (N, H, W)
    src_y = sin * u + cos * v + dtype.type(cy)
    return bilinear_sample(images, src_y, src_x, fill, xp)


def elastic_distortion(images, rng, alpha=34.0, sigma=4.0, fill=0.0):
    """Elastic distortion (Simard et al., 2003): a smooth random displacement per pixel.

    Displacements are uniform in [-1, 1] per pixel and direction, smoothed by a
    Gaussian of std ``sigma`` pixels (zero beyond the border) and multiplied by
    ``alpha``. The smoothing is two small matrix products, H x H and W x W.

    images: float (N, C, H, W); all channels of an image share one displacement.
    rng:    np.random.Generator.
    alpha:  float >= 0, displacement strength in pixels (34 for MNIST in the paper).
    sigma:  float > 0, smoothness in pixels (4 for MNIST).
    fill:   float or (C,) array, the value of pixels that come from outside.
    Returns an array shaped and typed like ``images``.
    """
    if not (alpha >= 0 and sigma > 0):
        raise UserError(f"elastic_distortion: need alpha >= 0 and sigma > 0, got {alpha}, {sigma}")
    n = _check_images(images)
    _, _, h, w = images.shape
    dtype = images.dtype
    smooth_h, smooth_w = _gaussian_matrix(h, sigma, dtype), _gaussian_matrix(w, sigma, dtype)
    noise = rng.uniform(-1.0, 1.0, (2, n, h, w)).astype(dtype)
    dy, dx = alpha * (smooth_h @ noise @ smooth_w.T)  # each (N, H, W)
    src_y = np.arange(h, dtype=dtype)[:, None] + dy
    src_x = np.arange(w, dtype=dtype) + dx
    return bilinear_sample(images, src_y, src_x, fill)


def bilinear_sample(images, src_y, src_x, fill=0.0, xp=np):
    """Read each image at fractional positions, bilinearly; outside reads ``fill``.

    images: float (N, C, H, W).
    src_y:  (N, H', W') row positions (0 .. H - 1 inside), one map per image.
    src_x:  (N, H', W') column positions (0 .. W - 1 inside).
    fill:   float or (C,) array, the value outside the image.
    xp:     the array library of images, src_y and src_x.
    Returns float (N, C, H', W') like ``images``; all channels use the same map.
    Integer positions return the pixels exactly.
    """
    n, c, h, w = images.shape
    dtype = images.dtype
    fill = xp.asarray(_fill_values(fill, c, dtype))
    # A border of fill, one pixel before and two after: positions clipped to [-1, H]
    # (and [-1, W]) and their +1 neighbours then all lie inside the padded image, and
    # positions further out than one pixel read fill alone.
    row = w + 3
    padded = xp.empty((n, c, h + 3, row), dtype=dtype)
    padded[...] = fill.reshape(-1, 1, 1)
    padded[:, :, 1 : h + 1, 1 : w + 1] = images
    y = xp.clip(src_y, -1, h).astype(dtype, copy=False) + 1
    x = xp.clip(src_x, -1, w).astype(dtype, copy=False) + 1
    y0, x0 = xp.floor(y), xp.floor(x)
    wy, wx = (y - y0).reshape(n, 1, -1), (x - x0).reshape(n, 1, -1)
    # Flat index of the top-left neighbour in padded.ravel(), one row per (image, channel).
    corner = (y0 * row + x0).astype(np.intp).reshape(n, 1, -1)
    top_left = corner + (xp.arange(n * c) * ((h + 3) * row)).reshape(n, c, 1)
    # The other three neighbours are the same indices into shifted views of the data.
    flat = padded.ravel()
    v00, v01 = flat.take(top_left), flat[1:].take(top_left)
    v10, v11 = flat[row:].take(top_left), flat[row + 1 :].take(top_left)
    top = v00 + wx * (v01 - v00)
    bottom = v10 + wx * (v11 - v10)
    return (top + wy * (bottom - top)).reshape(n, c, *src_y.shape[1:])


def random_crop(images, rng, pad=4, fill=0.0, xp=np):
    """Pad each image by ``pad`` pixels of ``fill``, then crop a random H x W window of it.

    Equivalently, shift each image by its own integers (dy, dx), each uniform in
    [-pad, pad], filling what is uncovered.

    images: float (N, C, H, W).
    rng:    np.random.Generator; draws (N, 2) integers, one row (top, left) per image.
    pad:    whole number >= 0; 0 returns a copy of ``images``.
    fill:   float or (C,) array, the value of the padding (pass the normalized value of
            a black pixel).
    xp:     the array library of ``images``.
    Returns an array shaped and typed like ``images``.
    """
    pad = check_whole("random_crop: pad", pad, minimum=0)
    n = _check_images(images, xp)
    _, c, h, w = images.shape
    fill = xp.asarray(_fill_values(fill, c, images.dtype))
    padded = xp.empty((n, c, h + 2 * pad, w + 2 * pad), dtype=images.dtype)
    padded[...] = fill.reshape(-1, 1, 1)
    padded[:, :, pad : pad + h, pad : pad + w] = images
    top, left = xp.asarray(rng.integers(0, 2 * pad + 1, (n, 2)).T)
    # windows[n, c, i, j] is the H x W crop whose top-left corner is (i, j): a view, no copy.
    windows = xp.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
    return windows[xp.arange(n), :, top, left]  # (N, C, H, W): one gather for the batch


def random_flip(images, rng, p=0.5, xp=np):
    """Mirror each image left-right with probability ``p``.

    images: float (N, C, H, W).
    rng:    np.random.Generator; draws N uniforms, one per image.
    p:      number in [0, 1]; 0 returns a copy of ``images``, 1 flips them all.
    xp:     the array library of ``images``.
    Returns an array shaped and typed like ``images``.
    """
    p = check_real("random_flip: p", p, 0, 1)
    n = _check_images(images, xp)
    flip = xp.asarray(rng.random(n) < p)
    return xp.where(flip[:, None, None, None], images[..., ::-1], images)


# --tta: the views of each mode, as (mirrored, (dy, dx)) pairs; the first is the batch itself.
# A shift moves the picture one pixel down, up, right or left, black filling the edge it leaves.
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
TTA_VIEWS = {
    "flip": ((False, (0, 0)), (True, (0, 0))),
    "shift": tuple((False, shift) for shift in SHIFTS),
    "flip+shift": tuple((mirrored, shift) for mirrored in (False, True) for shift in SHIFTS),
}


def tta_views(images, mode, fill=0.0, xp=np):
    """The test-time copies of a batch that ``--tta mode`` averages over, one array each.

    images: float (N, C, H, W).
    mode:   a key of TTA_VIEWS: "flip" (the batch and its mirror image, 2 views), "shift"
            (the batch and its four one-pixel shifts, 5 views) or "flip+shift" (both, and
            the shifts of the mirror image: 10 views).
    fill:   float or (C,) array, what a shift uncovers (pass the normalized value of a
            black pixel, as for random_crop).
    xp:     the array library of ``images``.
    Returns a list of arrays shaped and typed like ``images``, the batch itself first; each
    view is made for the whole batch at once (slices, no loop over images).
    """
    if mode not in TTA_VIEWS:
        raise UserError(f"--tta must be one of {', '.join(TTA_VIEWS)}, got {mode!r}")
    _check_images(images, xp)
    fill = xp.asarray(_fill_values(fill, images.shape[1], images.dtype))
    views = []
    for mirrored, (dy, dx) in TTA_VIEWS[mode]:
        view = images[..., ::-1] if mirrored else images
        views.append(shifted(view, dy, dx, fill, xp) if dy or dx else view)
    return views


def shifted(images, dy, dx, fill, xp=np):
    """``images`` (N, C, H, W) moved ``dy`` rows down and ``dx`` columns right (negative:
    up, left), what is uncovered set to ``fill`` (1 or C values). |dy| < H, |dx| < W."""
    _, c, h, w = images.shape
    out = xp.empty_like(images)
    out[...] = xp.asarray(fill, dtype=images.dtype).reshape(-1, 1, 1)
    out[:, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, :, max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def random_erasing(images, rng, p=0.5, scale=(0.02, 0.2), ratio=(0.3, 3.3), fill=0.0, xp=np):
    """Random erasing (cutout): with probability ``p`` set a random rectangle of an image to fill.

    As in Zhong et al. (2017) and torchvision: the rectangle's area is a fraction of the
    image uniform in ``scale``, its aspect ratio (height / width) log-uniform in ``ratio``,
    its position uniform among those where it fits. Sides are rounded to whole pixels; of
    _ERASING_ATTEMPTS candidates per image the first that fits the image and whose rounded
    area still lies in ``scale`` is used, and an image none of whose candidates fit is
    left as it is.

    images: float (N, C, H, W).
    rng:    np.random.Generator; draws the same numbers whatever ``p`` is, one row per image.
    p:      number in [0, 1], the probability that an image is erased.
    scale:  (low, high), 0 < low <= high <= 1, the erased fraction of the image's area.
    ratio:  (low, high), 0 < low <= high, the rectangle's height / width.
    fill:   float or (C,) array, the erased pixels' value (the normalized black pixel, or 0
            for the mean).
    xp:     the array library of ``images``; the rectangles are worked out with NumPy.
    Returns an array shaped and typed like ``images``; all channels share the rectangle.
    """
    p = check_real("random_erasing: p", p, 0, 1)
    scale_low, scale_high = _check_range("random_erasing: scale", scale, high=1.0)
    ratio_low, ratio_high = _check_range("random_erasing: ratio", ratio)
    n = _check_images(images, xp)
    _, c, h, w = images.shape
    fill = xp.asarray(_fill_values(fill, c, images.dtype))
    k = _ERASING_ATTEMPTS
    erase = rng.random(n) < p
    area = rng.uniform(scale_low, scale_high, (n, k)) * (h * w)
    aspect = np.exp(rng.uniform(math.log(ratio_low), math.log(ratio_high), (n, k)))
    where = rng.random((n, 2))  # (top, left) as fractions of the free room
    heights = np.rint(np.sqrt(area * aspect)).astype(np.intp)  # (N, k) candidates
    widths = np.rint(np.sqrt(area / aspect)).astype(np.intp)
    erased = heights * widths
    fits = (heights >= 1) & (heights <= h) & (widths >= 1) & (widths <= w)
    fits &= (erased >= scale_low * h * w) & (erased <= scale_high * h * w)
    first = fits.argmax(axis=1)  # the first candidate that fits (0 when none does)
    rows = np.arange(n)
    active = erase & fits[rows, first]
    eh = np.where(active, heights[rows, first], 0)  # an empty rectangle when not erased
    ew = np.where(active, widths[rows, first], 0)
    top = (where[:, 0] * (h - eh + 1)).astype(np.intp)  # uniform in [0, h - eh]
    left = (where[:, 1] * (w - ew + 1)).astype(np.intp)
    y = np.arange(h)[None, :, None]
    x = np.arange(w)[None, None, :]
    inside = (y >= top[:, None, None]) & (y < (top + eh)[:, None, None])
    inside = inside & (x >= left[:, None, None]) & (x < (left + ew)[:, None, None])  # (N, H, W)
    return xp.where(xp.asarray(inside)[:, None], fill.reshape(1, -1, 1, 1), images)


def _check_range(name, pair, high=math.inf):
    """``(low, high)`` as floats with 0 < low <= high <= ``high``, or a UserError naming it."""
    try:
        low_value, high_value = pair
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a pair (low, high), got {pair!r}") from None
    low_value = check_real(f"{name}[0]", low_value, 0, high)
    high_value = check_real(f"{name}[1]", high_value, 0, high)
    if not 0 < low_value <= high_value:
        raise UserError(f"{name} must satisfy 0 < low <= high, got {pair!r}")
    return low_value, high_value


def _fill_values(fill, c, dtype):
    """``fill`` as a ``dtype`` array of 1 or ``c`` values, or a UserError."""
    fill = np.asarray(fill, dtype)
    if fill.size not in (1, c):
        raise UserError(f"fill must be one value or one per channel ({c}), got shape {fill.shape}")
    return fill


def _gaussian_matrix(size, sigma, dtype):
    """(size, size) matrix G with (G @ v) = v smoothed by a Gaussian, zero beyond the ends."""
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    radius = min(int(np.ceil(4 * sigma)), size - 1)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2) / taps.sum()
    return np.where(np.abs(offsets) <= radius, weights, 0.0).astype(dtype)


def _check_images(images, xp=np):
    """Raise UserError unless ``images`` is a floating (N, C, H, W) array of ``xp``; return N."""
    if not (isinstance(images, xp.ndarray) and images.ndim == 4):
        shape = getattr(images, "shape", None)
        raise UserError(f"augmentation needs images of shape (N, C, H, W), got shape {shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise UserError(
            f"augmentation needs floating images (normalize them first), got {images.dtype}"
        )
    return len(images)
