"""Natural-image augmentation: random_crop, random_flip, random_erasing against loop references."""

import numpy as np
import pytest

from data import random_crop, random_erasing, random_flip
from data.errors import UserError

AUGMENTATIONS = {
    "crop": lambda x, rng: random_crop(x, rng, pad=2, fill=np.array([7.0, 8.0, 9.0])),
    "flip": lambda x, rng: random_flip(x, rng),
    "erasing": lambda x, rng: random_erasing(x, rng, p=0.7, fill=-1.5),
}


def make_images(n=16, shape=(3, 10, 12), dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(dtype)


@pytest.mark.parametrize("name", AUGMENTATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_dtype_and_same_seed_same_output(name, dtype):
    augment = AUGMENTATIONS[name]
    images = make_images(dtype=dtype)
    before = images.copy()
    a = augment(images, np.random.default_rng(1))
    b = augment(images, np.random.default_rng(1))
    c = augment(images, np.random.default_rng(2))
    assert a.shape == images.shape and a.dtype == dtype
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, images)
    np.testing.assert_array_equal(images, before)  # the input is never modified
    assert a is not images


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_each_image_depends_only_on_itself_and_its_own_draws(name):
    """Changing image 0's pixels leaves the others' results bit for bit the same."""
    augment = AUGMENTATIONS[name]
    images = make_images()
    other = images.copy()
    other[0] = make_images(n=1, seed=9)[0]
    a = augment(images, np.random.default_rng(3))
    b = augment(other, np.random.default_rng(3))
    np.testing.assert_array_equal(a[1:], b[1:])


# random_flip


def test_flip_with_p_one_mirrors_every_image_and_p_zero_is_the_identity():
    images = make_images()
    np.testing.assert_array_equal(
        random_flip(images, np.random.default_rng(0), p=1.0), images[..., ::-1]
    )
    np.testing.assert_array_equal(random_flip(images, np.random.default_rng(0), p=0.0), images)


def test_flip_mirrors_some_images_whole_and_leaves_the_rest():
    images = make_images(n=64)
    out = random_flip(images, np.random.default_rng(4), p=0.5)
    flipped = [np.array_equal(o, x[..., ::-1]) for o, x in zip(out, images, strict=True)]
    kept = [np.array_equal(o, x) for o, x in zip(out, images, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # exactly one of the two
    assert 16 < sum(flipped) < 48


# random_crop


def crop_loop_reference(image, pad, fill, top, left):
    """Pad one (C, H, W) image with fill pixel by pixel, then slice an H x W window."""
    c, h, w = image.shape
    padded = np.empty((c, h + 2 * pad, w + 2 * pad), dtype=image.dtype)
    for ch in range(c):
        padded[ch] = fill[ch]
        for i in range(h):
            for j in range(w):
                padded[ch, pad + i, pad + j] = image[ch, i, j]
    return padded[:, top : top + h, left : left + w]


def test_crop_with_pad_zero_is_the_identity():
    images = make_images()
    np.testing.assert_array_equal(random_crop(images, np.random.default_rng(0), pad=0), images)


def test_each_crop_is_a_window_of_the_padded_image_at_random_offsets():
    pad, fill = 3, np.array([7.0, 8.0, 9.0])
    images = make_images(n=32, shape=(3, 6, 5))
    out = random_crop(images, np.random.default_rng(5), pad=pad, fill=fill)
    offsets = []
    for image, crop in zip(images, out, strict=True):
        matches = [
            (top, left)
            for top in range(2 * pad + 1)
            for left in range(2 * pad + 1)
            if np.array_equal(crop, crop_loop_reference(image, pad, fill, top, left))
        ]
        assert len(matches) == 1  # random pixels: exactly one window matches
        offsets.append(matches[0])
    tops, lefts = zip(*offsets, strict=True)
    assert len(set(tops)) > 3 and len(set(lefts)) > 3  # the offsets vary, in both directions
    assert min(tops) >= 0 and max(tops) <= 2 * pad


def test_crop_draws_one_row_of_offsets_per_image():
    """The crop at (top, left) read from the first (N, 2) integers the generator gives."""
    pad = 4
    images = make_images(n=8, shape=(2, 7, 9))
    out = random_crop(images, np.random.default_rng(6), pad=pad, fill=0.5)
    top_left = np.random.default_rng(6).integers(0, 2 * pad + 1, (8, 2))
    for image, crop, (top, left) in zip(images, out, top_left, strict=True):
        np.testing.assert_array_equal(crop, crop_loop_reference(image, pad, [0.5] * 2, top, left))


# random_erasing


def test_erasing_with_p_zero_is_the_identity():
    images = make_images()
    out = random_erasing(images, np.random.default_rng(0), p=0.0)
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("scale", [(0.02, 0.2), (0.3, 0.5)])
def test_erasing_with_p_one_fills_one_rectangle_of_the_drawn_size(scale):
    h, w = 32, 32
    fill = np.array([7.0, 8.0, 9.0], dtype=np.float32)
    images = make_images(n=48, shape=(3, h, w))
    out = random_erasing(images, np.random.default_rng(7), p=1.0, scale=scale, fill=fill)
    for image, result in zip(images, out, strict=True):
        changed = (result != image).any(axis=0)  # (H, W); random pixels never equal fill
        rows, cols = np.nonzero(changed)
        assert rows.size > 0  # 32 x 32 leaves room for every candidate: each image is erased
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert changed[top:bottom, left:right].all()  # the changed pixels are one rectangle
        assert changed.sum() == (bottom - top) * (right - left)
        assert scale[0] <= changed.sum() / (h * w) <= scale[1]
        np.testing.assert_array_equal(
            result[:, top:bottom, left:right],
            np.broadcast_to(fill[:, None, None], (3, bottom - top, right - left)),
        )
        np.testing.assert_array_equal(result[:, ~changed], image[:, ~changed])


def test_erasing_aspect_ratio_stays_near_its_range():
    images = make_images(n=64, shape=(1, 40, 40))
    out = random_erasing(images, np.random.default_rng(8), p=1.0, ratio=(0.5, 2.0), fill=0.0)
    for image, result in zip(images, out, strict=True):
        rows, cols = np.nonzero(result[0] != image[0])
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        # rounding each side to whole pixels moves the ratio by at most half a pixel per side
        assert (height - 0.5) / (width + 0.5) <= 2.0 and (height + 0.5) / (width - 0.5) >= 0.5


def test_erasing_with_p_half_erases_some_images_and_keeps_others():
    images = make_images(n=64, shape=(3, 16, 16))
    out = random_erasing(images, np.random.default_rng(9), p=0.5)
    erased = (out != images).any(axis=(1, 2, 3))
    assert 16 < erased.sum() < 48


def test_erasing_draws_do_not_depend_on_p():
    """The rectangles of p=1 are those of p=0.5 wherever p=0.5 erased."""
    images = make_images(n=32, shape=(3, 16, 16))
    half = random_erasing(images, np.random.default_rng(10), p=0.5)
    full = random_erasing(images, np.random.default_rng(10), p=1.0)
    erased = (half != images).any(axis=(1, 2, 3))
    np.testing.assert_array_equal(half[erased], full[erased])


# errors


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda x, r: random_crop(x, r, pad=-1), "pad"),
        (lambda x, r: random_crop(x, r, pad=1.5), "pad"),
        (lambda x, r: random_crop(x, r, fill=np.zeros(2)), "one per channel"),
        (lambda x, r: random_crop(x[0], r), "shape"),
        (lambda x, r: random_flip(x, r, p=1.5), "p"),
        (lambda x, r: random_flip(x.astype(np.uint8), r), "floating"),
        (lambda x, r: random_erasing(x, r, p=-0.1), "random_erasing: p"),
        (lambda x, r: random_erasing(x, r, scale=(0.3, 0.1)), "scale"),
        (lambda x, r: random_erasing(x, r, scale=(0.0, 0.2)), "scale"),
        (lambda x, r: random_erasing(x, r, scale=(0.1, 1.5)), "scale"),
        (lambda x, r: random_erasing(x, r, ratio=(0.0, 1.0)), "ratio"),
        (lambda x, r: random_erasing(x, r, ratio=2.0), "ratio"),
        (lambda x, r: random_erasing(x, r, fill=np.zeros(4)), "one per channel"),
    ],
)
def test_bad_arguments_raise_user_error_naming_them(call, expected):
    images = np.zeros((2, 3, 8, 8), dtype=np.float32)
    with pytest.raises(UserError, match=expected):
        call(images, np.random.default_rng(0))
