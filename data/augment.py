"""Data augmentation: pure, vectorized functions of (images, rng) on float (N, C, H, W) batches.

Each output pixel reads the input at a source position computed for it (the inverse
map), with bilinear interpolation; positions outside the image read ``fill``. All
images of a batch are warped at once: coordinates are (N, H, W) arrays and the
four neighbours are gathered with one fancy index each.

Coordinates: x is the column (to the right), y the row (downwards); the centre of
rotation and scaling is the image centre ((W - 1) / 2, (H - 1) / 2).
"""

import numpy as np

from data.errors import UserError


def random_affine(
    images, rng, max_shift=2.0, max_rotation_deg=10.0, scale_range=(0.9, 1.1), fill=0.0
):
    """Shift, rotate and scale each image by its own random amounts.

    images:           float (N, C, H, W).
    rng:              np.random.Generator.
    max_shift:        float >= 0; shifts dx, dy uniform in [-max_shift, max_shift] pixels.
    max_rotation_deg: float >= 0; angle uniform in [-max, max] degrees.
    scale_range:      (low, high), 0 < low <= high; scale uniform in [low, high].
    fill:             float or (C,) array, the value of pixels uncovered by the warp
                      (pass the normalized value of a black pixel).
    Returns an array shaped and typed like ``images``.
    """
    low, high = scale_range
    if not (max_shift >= 0 and max_rotation_deg >= 0 and 0 < low <= high):
        raise UserError(
            f"random_affine: need max_shift >= 0, max_rotation_deg >= 0 and "
            f"0 < scale_range[0] <= scale_range[1], got max_shift={max_shift}, "
            f"max_rotation_deg={max_rotation_deg}, scale_range={scale_range}"
        )
    n = _check_images(images)
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg, n))
    scale = rng.uniform(low, high, n)
    shift = rng.uniform(-max_shift, max_shift, (n, 2))
    return affine_warp(images, angle, scale, shift, fill)


def affine_warp(images, angle, scale, shift, fill=0.0):
    """Rotate by ``angle``, scale by ``scale`` about the centre, then shift, per image.

    An output pixel p reads the input at ``c + R(-angle) (p - c - shift) / scale``.

    images: float (N, C, H, W).
    angle:  (N,) radians; positive turns the content counter-clockwise on screen
            (a quarter turn equals ``np.rot90(image)``).
    scale:  (N,) > 0; above 1 enlarges the content.
    shift:  (N, 2) pixels (dx, dy); content moves right by dx and down by dy.
    fill:   float or (C,) array, the value of pixels that come from outside.
    Returns an array shaped and typed like ``images``.
    """
    _check_images(images)
    _, _, h, w = images.shape
    dtype = images.dtype
    cx, cy = (w - 1) / 2, (h - 1) / 2
    scale = np.asarray(scale, dtype)[:, None, None]
    shift = np.asarray(shift, dtype)
    cos = np.cos(angle).astype(dtype)[:, None, None]
    sin = np.sin(angle).astype(dtype)[:, None, None]
    u = (np.arange(w, dtype=dtype) - cx - shift[:, 0, None, None]) / scale  # (N, 1, W)
    v = (np.arange(h, dtype=dtype)[:, None] - cy - shift[:, 1, None, None]) / scale  # (N, H, 1)
    src_x = cos * u - sin * v + dtype.type(cx)  # (N, H, W)
    src_y = sin * u + cos * v + dtype.type(cy)
    return bilinear_sample(images, src_y, src_x, fill)


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


def bilinear_sample(images, src_y, src_x, fill=0.0):
    """Read each image at fractional positions, bilinearly; outside reads ``fill``.

    images: float (N, C, H, W).
    src_y:  (N, H', W') row positions (0 .. H - 1 inside), one map per image.
    src_x:  (N, H', W') column positions (0 .. W - 1 inside).
    fill:   float or (C,) array, the value outside the image.
    Returns float (N, C, H', W') like ``images``; all channels use the same map.
    Integer positions return the pixels exactly.
    """
    n, c, h, w = images.shape
    dtype = images.dtype
    fill = np.asarray(fill, dtype)
    if fill.size not in (1, c):
        raise UserError(f"fill must be one value or one per channel ({c}), got shape {fill.shape}")
    # A border of fill, one pixel before and two after: positions clipped to [-1, H]
    # (and [-1, W]) and their +1 neighbours then all lie inside the padded image, and
    # positions further out than one pixel read fill alone.
    row = w + 3
    padded = np.empty((n, c, h + 3, row), dtype=dtype)
    padded[...] = fill.reshape(-1, 1, 1)
    padded[:, :, 1 : h + 1, 1 : w + 1] = images
    y = np.clip(src_y, -1, h).astype(dtype, copy=False) + 1
    x = np.clip(src_x, -1, w).astype(dtype, copy=False) + 1
    y0, x0 = np.floor(y), np.floor(x)
    wy, wx = (y - y0).reshape(n, 1, -1), (x - x0).reshape(n, 1, -1)
    # Flat index of the top-left neighbour in padded.ravel(), one row per (image, channel).
    corner = (y0 * row + x0).astype(np.intp).reshape(n, 1, -1)
    top_left = corner + (np.arange(n * c) * ((h + 3) * row)).reshape(n, c, 1)
    # The other three neighbours are the same indices into shifted views of the data.
    flat = padded.ravel()
    v00, v01 = flat.take(top_left), flat[1:].take(top_left)
    v10, v11 = flat[row:].take(top_left), flat[row + 1 :].take(top_left)
    top = v00 + wx * (v01 - v00)
    bottom = v10 + wx * (v11 - v10)
    return (top + wy * (bottom - top)).reshape(n, c, *src_y.shape[1:])


def _gaussian_matrix(size, sigma, dtype):
    """(size, size) matrix G with (G @ v) = v smoothed by a Gaussian, zero beyond the ends."""
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    radius = min(int(np.ceil(4 * sigma)), size - 1)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2) / taps.sum()
    return np.where(np.abs(offsets) <= radius, weights, 0.0).astype(dtype)


def _check_images(images):
    """Raise UserError unless ``images`` is a floating (N, C, H, W) array; return N."""
    if not (isinstance(images, np.ndarray) and images.ndim == 4):
        shape = getattr(images, "shape", None)
        raise UserError(f"augmentation needs images of shape (N, C, H, W), got shape {shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise UserError(
            f"augmentation needs floating images (normalize them first), got {images.dtype}"
        )
    return len(images)
