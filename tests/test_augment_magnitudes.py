"""The rotation, scale and shift that random_affine applies, measured from its output images.

The input is a coordinate image: channel 0 holds each pixel's column x, channel 1 its row y.
Bilinear interpolation of a linear ramp is exact, so every output pixel away from the border
holds the source position it read, and a least-squares fit of those positions against the
pixel's own gives the affine map the warp applied: its matrix says the angle and the scale,
its offset the shift. Pixels that read anything of the fill (NaN here) are left out.

The measured values must lie in the ranges random_affine's arguments state and fill them
(a uniform draw of a few hundred reaches near both ends), for its defaults and other ranges:
a rotation drawn in degrees but applied as radians, a range's end or sign dropped, or one
argument wired to another's place, each fails here.
"""

import numpy as np
import pytest

from data import affine_warp, elastic_distortion, random_affine
from data.errors import UserError

H, W = 24, 28
CENTRE = np.array([(W - 1) / 2, (H - 1) / 2])  # (x, y), as data/augment.py says


def coordinate_images(n):
    """(n, 2, H, W) float64: channel 0 the column index x, channel 1 the row index y."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.broadcast_to(np.stack([x, y]), (n, 2, H, W)).copy()


def measured(out):
    """(angle in degrees, scale, shift (dx, dy)) of each warped coordinate image, (N,) (N,) (N, 2).

    Fits src = A p + b on the pixels p whose source src (the output's two channels) is all
    image; A = R(angle) / scale with R the rotation [[cos, -sin], [sin, cos]] in (x, y), and
    the map is src = c + A (p - c - shift) (c the centre).
    """
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    angles, scales, shifts = [], [], []
    for image in out:
        ok = np.isfinite(image).all(axis=0)
        assert ok.sum() > H * W / 3  # enough pixels away from the border to fit
        p = np.stack([x[ok], y[ok], np.ones(ok.sum())], axis=1)  # (K, 3)
        src = np.stack([image[0][ok], image[1][ok]], axis=1)  # (K, 2)
        fit, residuals, *_ = np.linalg.lstsq(p, src, rcond=None)
        assert residuals.max() < 1e-12  # the map really is affine
        a, b = fit[:2].T, fit[2]  # src = a @ p + b
        scale = 1 / np.sqrt(np.linalg.det(a))
        rotation = a * scale
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(2), atol=1e-9)  # no shear
        angles.append(np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0])))
        scales.append(scale)
        # b = c - A (c + shift)  =>  shift = A^-1 (c - b) - c
        shifts.append(np.linalg.solve(a, CENTRE - b) - CENTRE)
    return np.array(angles), np.array(scales), np.array(shifts)


def test_the_measurement_recovers_known_warps():
    """The measuring tool itself, on affine_warp with the angles, scales and shifts given."""
    angle = np.radians([0.0, 7.5, -30.0, 3.0])
    scale = np.array([1.0, 0.8, 1.2, 1.05])
    shift = np.array([[0.0, 0.0], [1.5, -0.5], [-2.0, 2.5], [0.25, 0.75]])
    out = affine_warp(coordinate_images(4), angle, scale, shift, fill=np.nan)
    got_angle, got_scale, got_shift = measured(out)
    np.testing.assert_allclose(got_angle, np.degrees(angle), atol=1e-9)
    np.testing.assert_allclose(got_scale, scale, rtol=1e-9)
    np.testing.assert_allclose(got_shift, shift, atol=1e-9)


def assert_fills_range(values, low, high, what):
    """All ``values`` in [low, high] (float rounding aside), and some within 10% of each end."""
    margin = 1e-9 * max(1.0, abs(high))
    assert values.min() >= low - margin and values.max() <= high + margin, (what, values)
    if high > low:
        near = 0.1 * (high - low)
        assert values.min() < low + near and values.max() > high - near, (what, values)


@pytest.mark.parametrize(
    "arguments",
    [
        {},  # the defaults, which --augment trains with
        {"max_shift": 3.5, "max_rotation_deg": 25.0, "scale_range": (0.7, 1.3)},
        {"max_shift": 0.5, "max_rotation_deg": 2.0, "scale_range": (1.0, 1.15)},
    ],
)
def test_random_affine_applies_rotations_scales_and_shifts_in_the_stated_ranges(arguments):
    defaults = {"max_shift": 2.0, "max_rotation_deg": 10.0, "scale_range": (0.9, 1.1)}
    stated = {**defaults, **arguments}
    out = random_affine(coordinate_images(300), np.random.default_rng(0), fill=np.nan, **arguments)
    angle, scale, shift = measured(out)
    top = stated["max_rotation_deg"]
    assert_fills_range(angle, -top, top, "angle (degrees)")
    assert_fills_range(scale, *stated["scale_range"], "scale")
    for axis, name in enumerate(["dx", "dy"]):
        assert_fills_range(shift[:, axis], -stated["max_shift"], stated["max_shift"], name)


def test_each_image_gets_its_own_angle_scale_and_shift_independently():
    """Drawn per image and per quantity: no two images alike, and the quantities uncorrelated
    (one number reused for two of them would correlate them fully)."""
    out = random_affine(coordinate_images(300), np.random.default_rng(1), fill=np.nan)
    angle, scale, shift = measured(out)
    quantities = np.stack([angle, scale, shift[:, 0], shift[:, 1]])
    assert all(len(np.unique(np.round(q, 9))) == 300 for q in quantities)
    correlation = np.corrcoef(quantities)
    assert np.abs(correlation - np.eye(4)).max() < 0.25  # 300 draws: |r| ~ 0.06 by chance


def smoothed(noise, sigma):
    """Each row and column of (H, W) ``noise`` convolved with a Gaussian of std ``sigma``,
    truncated at 4 sigma (or the image), its taps summing to 1, zero beyond the border."""
    smooth = noise
    for axis in (0, 1):
        size = noise.shape[axis]
        radius = min(int(np.ceil(4 * sigma)), size - 1)
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        taps /= taps.sum()
        centred = slice(radius, radius + size)  # the full convolution's middle: zero padding
        smooth = np.apply_along_axis(
            lambda v, t=taps, c=centred: np.convolve(v, t)[c], axis, smooth
        )
    return smooth


@pytest.mark.parametrize("alpha, sigma", [(8.0, 3.0), (2.5, 1.5), (34.0, 4.0)])
def test_elastic_distortion_moves_each_pixel_by_alpha_times_smoothed_uniform_noise(alpha, sigma):
    """The displacement of every pixel, measured on the coordinate images, against the
    docstring's recipe computed by convolution: uniform noise in [-1, 1] per pixel and
    direction (y first), smoothed, times alpha."""
    n = 3
    out = elastic_distortion(coordinate_images(n), np.random.default_rng(4), alpha, sigma, np.nan)
    noise = np.random.default_rng(4).uniform(-1.0, 1.0, (2, n, H, W))
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    for i in range(n):
        dy, dx = (alpha * smoothed(noise[k, i], sigma) for k in (0, 1))
        ok = np.isfinite(out[i]).all(axis=0)
        assert ok.mean() > 0.5
        np.testing.assert_allclose(out[i, 0][ok], (x + dx)[ok], atol=1e-9)
        np.testing.assert_allclose(out[i, 1][ok], (y + dy)[ok], atol=1e-9)
        assert np.abs(dx).max() > 0.05 * alpha  # the field really moves the pixels


def test_the_warps_default_to_a_black_fill_and_the_paper_s_elastic_settings():
    """fill 0 by default; elastic_distortion's defaults are Simard et al.'s alpha 34, sigma 4;
    float32 images come back float32."""
    images = coordinate_images(2).astype(np.float32)
    rng = np.random.default_rng
    np.testing.assert_array_equal(
        elastic_distortion(images, rng(5)), elastic_distortion(images, rng(5), 34.0, 4.0, 0.0)
    )
    moved = affine_warp(images, np.zeros(2), np.ones(2), np.full((2, 2), 30.0))
    assert moved.dtype == np.float32 and not moved.any()  # all of it from outside: fill 0
    assert elastic_distortion(images, rng(5)).dtype == np.float32


def test_the_edges_of_the_warps_arguments():
    """A scale of 0 is refused, a sigma of 1 taken; random_affine fills with 0 by default."""
    images = coordinate_images(2)
    with pytest.raises(UserError, match="scale_range"):
        random_affine(images, np.random.default_rng(0), scale_range=(0.0, 1.0))
    assert elastic_distortion(images, np.random.default_rng(0), alpha=1.0, sigma=1.0).shape
    far = random_affine(images, np.random.default_rng(0), max_shift=0.0, scale_range=(0.01, 0.01))
    assert np.count_nonzero(far[:, :, 0, :]) == 0  # the border reads from outside: fill 0
