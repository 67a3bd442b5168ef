"""Normalization, the stratified split, the batch iterator and augmentation."""

import numpy as np
import pytest

from data import (
    Normalization,
    affine_warp,
    bilinear_sample,
    elastic_distortion,
    fit_normalization,
    iterate_minibatches,
    normalize,
    random_affine,
    stratified_split,
)
from data.errors import UserError

# normalization


def test_fit_normalization_matches_float64_reference():
    x = np.random.default_rng(0).integers(0, 256, (50, 3, 5, 4), dtype=np.uint8)
    norm = fit_normalization(x)
    scaled = x / 255.0
    assert norm.mean.dtype == np.float32 and norm.mean.shape == (3,)
    np.testing.assert_allclose(norm.mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(norm.std, scaled.std(axis=(0, 2, 3)), rtol=1e-6)


def test_normalize_is_the_formula_in_float32():
    x = np.random.default_rng(1).integers(0, 256, (6, 3, 4, 4), dtype=np.uint8)
    norm = Normalization.from_arrays([0.2, 0.5, 0.7], [0.1, 0.3, 0.25])
    out = normalize(x, norm)
    expected = (x / 255.0 - norm.mean[:, None, None]) / norm.std[:, None, None]
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_normalized_training_set_has_zero_mean_unit_std():
    x = np.random.default_rng(2).integers(0, 200, (40, 2, 6, 6), dtype=np.uint8)
    out = normalize(x, fit_normalization(x))
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1.0, rtol=1e-5)


def test_toy_points_are_normalized_without_rescaling():
    x = np.random.default_rng(3).normal(5.0, 2.0, (100, 2)).astype(np.float32)
    norm = fit_normalization(x)
    np.testing.assert_allclose(norm.mean, x.mean(axis=0), rtol=1e-5)
    out = normalize(x, norm)
    assert out.shape == (100, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out.std(axis=0), 1.0, rtol=1e-5)


def test_constant_channel_gets_unit_std():
    x = np.zeros((4, 1, 3, 3), dtype=np.uint8)
    norm = fit_normalization(x)
    assert norm.std[0] == 1.0
    assert np.all(normalize(x, norm) == 0.0)


def test_normalization_round_trips_through_npz(tmp_path):
    x = np.random.default_rng(4).integers(0, 256, (10, 3, 2, 2), dtype=np.uint8)
    norm = fit_normalization(x)
    path = tmp_path / "ckpt.npz"
    np.savez(path, norm_mean=norm.mean, norm_std=norm.std)
    with np.load(path, allow_pickle=False) as f:
        again = Normalization.from_arrays(f["norm_mean"], f["norm_std"], source=str(path))
    np.testing.assert_array_equal(again.mean, norm.mean)
    np.testing.assert_array_equal(normalize(x, again), normalize(x, norm))


@pytest.mark.parametrize(
    "mean, std, expected",
    [([0.1, 0.2], [0.3], "shape"), ([0.1], [0.0], "stds between"), ([0.1], [1e-40], "stds between"),
     ([np.nan], [1.0], "means within")],
)
def test_bad_stored_normalization(mean, std, expected):
    with pytest.raises(UserError, match=f"ckpt.npz: .*{expected}"):
        Normalization.from_arrays(mean, std, source="ckpt.npz")


def test_normalize_rejects_wrong_channels_and_dtypes():
    norm = Normalization.from_arrays([0.5], [0.25])
    with pytest.raises(UserError, match="1 channel"):
        normalize(np.zeros((2, 3, 4, 4), np.uint8), norm)
    with pytest.raises(UserError, match="uint16"):
        normalize(np.zeros((2, 1, 4, 4), np.uint16), norm)


# stratified split


def test_split_is_stratified_disjoint_and_sorted():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])  # N = 100
    train, val = stratified_split(y, 20, np.random.default_rng(0))
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert len(val) == 20 and len(train) == 80
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(100))
    assert np.bincount(y[val], minlength=4).tolist() == [10, 6, 3, 1]


def test_split_rounds_class_quotas_to_the_total():
    y = np.repeat(np.arange(3), [7, 7, 7])
    _, val = stratified_split(y, 10, np.random.default_rng(0))
    counts = np.bincount(y[val], minlength=3)
    assert counts.sum() == 10 and set(counts.tolist()) <= {3, 4}


def test_split_is_deterministic_per_seed():
    y = np.random.default_rng(5).integers(0, 10, 500)
    a = stratified_split(y, 100, np.random.default_rng(7))
    b = stratified_split(y, 100, np.random.default_rng(7))
    c = stratified_split(y, 100, np.random.default_rng(8))
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_split_with_empty_validation_or_empty_training_part():
    train, val = stratified_split(np.array([1, 0, 1]), 0, np.random.default_rng(0))
    assert train.tolist() == [0, 1, 2] and val.size == 0 and val.dtype == np.int64
    train, val = stratified_split(np.array([1, 0, 1]), 3, np.random.default_rng(0))
    assert train.size == 0 and train.dtype == np.int64 and val.tolist() == [0, 1, 2]


@pytest.mark.parametrize("val_size", [-1, 11, 2.5, True])
def test_split_rejects_out_of_range_sizes(val_size):
    with pytest.raises(UserError, match="val_size"):
        stratified_split(np.arange(10) % 2, val_size, np.random.default_rng(0))


# mini-batches


def test_batches_cover_every_example_once_including_the_last_partial_batch():
    x = np.arange(23 * 2).reshape(23, 2)
    y = np.arange(23)
    batches = list(iterate_minibatches(x, y, 5, np.random.default_rng(0)))
    assert [len(yb) for _, yb in batches] == [5, 5, 5, 5, 3]
    seen = np.concatenate([yb for _, yb in batches])
    np.testing.assert_array_equal(np.sort(seen), y)
    assert not np.array_equal(seen, y)  # shuffled
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)  # pairs stay together


def test_batches_are_reproducible_and_each_epoch_reshuffles():
    x, y = np.zeros((40, 1)), np.arange(40)

    def epochs(seed):
        rng = np.random.default_rng(seed)
        return [np.concatenate([yb for _, yb in iterate_minibatches(x, y, 8, rng)]) for _ in "ab"]

    first, second = epochs(3)
    again = epochs(3)
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])
    assert not np.array_equal(first, second)


def test_batches_without_rng_are_views_in_order():
    x, y = np.arange(10.0).reshape(10, 1), np.arange(10)
    batches = list(iterate_minibatches(x, y, 4))
    assert [yb.tolist() for _, yb in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(np.shares_memory(xb, x) for xb, _ in batches)


def test_batches_reject_bad_arguments_at_the_call():
    with pytest.raises(UserError, match="x holds 3 examples but y holds 2"):
        iterate_minibatches(np.zeros(3), np.zeros(2), 1)
    with pytest.raises(UserError, match="batch_size"):
        iterate_minibatches(np.zeros(3), np.zeros(3), 0)


# augmentation


def slow_bilinear(image, src_y, src_x, fill):
    """Loop oracle: one channel (H, W) read at positions (H', W'), fill outside."""
    h, w = image.shape

    def pixel(r, c):
        return image[r, c] if 0 <= r < h and 0 <= c < w else fill

    out = np.empty(src_y.shape)
    for i in range(src_y.shape[0]):
        for j in range(src_y.shape[1]):
            y, x = src_y[i, j], src_x[i, j]
            r, c = int(np.floor(y)), int(np.floor(x))
            fy, fx = y - r, x - c
            top = pixel(r, c) * (1 - fx) + pixel(r, c + 1) * fx
            bottom = pixel(r + 1, c) * (1 - fx) + pixel(r + 1, c + 1) * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def test_bilinear_sample_matches_the_loop_oracle():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 3, 5, 6))
    src_y = rng.uniform(-3, 8, (2, 4, 7))
    src_x = rng.uniform(-3, 9, (2, 4, 7))
    fill = np.array([0.5, -1.0, 2.0])
    out = bilinear_sample(images, src_y, src_x, fill)
    assert out.shape == (2, 3, 4, 7) and out.dtype == np.float64
    for n in range(2):
        for c in range(3):
            expected = slow_bilinear(images[n, c], src_y[n], src_x[n], fill[c])
            np.testing.assert_allclose(out[n, c], expected, rtol=1e-12, atol=1e-12)


def test_random_affine_shape_dtype_and_reproducibility():
    images = np.random.default_rng(0).standard_normal((16, 1, 28, 28)).astype(np.float32)
    a = random_affine(images, np.random.default_rng(1), fill=-0.42)
    b = random_affine(images, np.random.default_rng(1), fill=-0.42)
    c = random_affine(images, np.random.default_rng(2), fill=-0.42)
    assert a.shape == images.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, images)
    assert random_affine(images.astype(np.float64), np.random.default_rng(1)).dtype == np.float64


def test_random_affine_without_movement_is_the_identity():
    images = np.random.default_rng(0).standard_normal((4, 3, 9, 7)).astype(np.float32)
    out = random_affine(
        images, np.random.default_rng(0), max_shift=0.0, max_rotation_deg=0.0, scale_range=(1, 1)
    )
    np.testing.assert_array_equal(out, images)


def test_integer_shift_moves_pixels_and_fills_per_channel():
    images = np.random.default_rng(0).standard_normal((2, 3, 6, 5)).astype(np.float32)
    fill = np.array([7.0, 8.0, 9.0])
    shift = np.array([[2.0, -1.0], [2.0, -1.0]])  # right 2, up 1
    out = affine_warp(images, np.zeros(2), np.ones(2), shift, fill)
    expected = np.empty_like(images)
    expected[:] = fill[:, None, None]
    expected[:, :, :5, 2:] = images[:, :, 1:, :3]
    np.testing.assert_array_equal(out, expected)


def test_quarter_turn_is_rot90():
    images = np.random.default_rng(0).standard_normal((3, 2, 8, 8)).astype(np.float32)
    out = affine_warp(images, np.full(3, np.pi / 2), np.ones(3), np.zeros((3, 2)))
    np.testing.assert_allclose(out, np.rot90(images, axes=(2, 3)), atol=1e-5)


def test_scale_two_enlarges_about_the_centre():
    image = np.zeros((1, 1, 9, 9), dtype=np.float32)
    image[0, 0, 4, 5] = 1.0  # one pixel right of the centre (4, 4)
    out = affine_warp(image, np.zeros(1), np.full(1, 2.0), np.zeros((1, 2)))
    assert out[0, 0, 4, 6] == 1.0  # now two pixels right of the centre
    assert out[0, 0, 4, 4] == 0.0


def test_elastic_distortion():
    images = np.random.default_rng(0).standard_normal((5, 2, 28, 28)).astype(np.float32)
    a = elastic_distortion(images, np.random.default_rng(3), alpha=8.0, sigma=3.0)
    b = elastic_distortion(images, np.random.default_rng(3), alpha=8.0, sigma=3.0)
    assert a.shape == images.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, images)
    still = elastic_distortion(images, np.random.default_rng(3), alpha=0.0, sigma=3.0)
    np.testing.assert_array_equal(still, images)


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda x, r: random_affine(x, r, max_shift=-1.0), "max_shift"),
        (lambda x, r: random_affine(x, r, scale_range=(1.2, 0.8)), "scale_range"),
        (lambda x, r: random_affine(x.astype(np.uint8), r), "floating"),
        (lambda x, r: random_affine(x[0], r), "shape"),
        (lambda x, r: random_affine(x, r, fill=np.zeros(2)), "one per channel"),
        (lambda x, r: elastic_distortion(x, r, alpha=1.0, sigma=0.0), "sigma"),
    ],
)
def test_augmentation_rejects_bad_input(call, expected):
    images = np.zeros((2, 3, 8, 8), dtype=np.float32)
    with pytest.raises(UserError, match=expected):
        call(images, np.random.default_rng(0))
