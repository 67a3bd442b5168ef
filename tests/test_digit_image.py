"""Tests for data/digit_image.py: user pictures become MNIST-like 28x28 images."""

import gzip
import re
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from data import digit_image
from data.digit_image import digit_image_from_bytes, load_digit_image, prepared_path, to_png
from data.errors import UserError
from tests.hostile_pictures import HOSTILE, encoded, tiff_with_rational_strip_offsets

ROOT = Path(__file__).resolve().parent.parent

MNIST_TEST_IMAGES = ROOT / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"  # committed


def mnist_digits(count):
    """The first ``count`` MNIST test images, (count, 28, 28) uint8, read straight from IDX."""
    with gzip.open(MNIST_TEST_IMAGES, "rb") as handle:
        raw = handle.read(16 + count * 28 * 28)
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, 28, 28)


def photo_of(digit, factor=5, height=180, width=230, top=12, left=60):
    """Upscale a 28x28 MNIST digit uniformly and put it off-centre on a larger dark field."""
    big = np.kron(digit, np.ones((factor, factor), dtype=np.uint8))
    field = np.zeros((height, width), dtype=np.uint8)
    field[top : top + big.shape[0], left : left + big.shape[1]] = big
    return field


def correlation(a, b):
    """Pearson correlation of two images."""
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def center_of_mass(image):
    """(row, col) intensity centre of mass, pixel centres at integer indices."""
    weights = image.astype(np.float64)
    rows, cols = np.indices(image.shape)
    return (weights * rows).sum() / weights.sum(), (weights * cols).sum() / weights.sum()


def save(array, path, **options):
    """Save a uint8/uint16 array with Pillow and return the path."""
    Image.fromarray(array).save(path, **options)
    return path


def png_header_only(path, width, height):
    """Write a tiny PNG whose header claims ``width`` x ``height`` 1-bit pixels (data cut short)."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (1 + (width + 7) // 8))  # one row only
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def digit():
    """A real MNIST test digit (a 7), white on black."""
    return mnist_digits(1)[0]


@pytest.fixture
def dark_on_light(digit, tmp_path):
    """The digit as a user would photograph it: dark ink on white paper, as a PNG."""
    return save(255 - photo_of(digit), tmp_path / "seven.png")


@pytest.mark.parametrize("suffix, options", [(".png", {}), (".jpg", {"quality": 90})])
def test_real_mnist_digit_is_recovered(digit, tmp_path, suffix, options):
    path = save(255 - photo_of(digit), tmp_path / f"seven{suffix}", **options)
    prepared = load_digit_image(path)
    assert prepared.shape == (28, 28) and prepared.dtype == np.uint8
    assert correlation(prepared, digit) > 0.9
    assert prepared.max() == 255 and prepared[0].max() == 0  # white ink, black border
    row, col = center_of_mass(prepared)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1


def test_several_mnist_digits_are_recovered(tmp_path):
    for index, digit in enumerate(mnist_digits(6)):
        path = save(255 - photo_of(digit, factor=3, top=5, left=9), tmp_path / f"d{index}.png")
        assert correlation(load_digit_image(path), digit) > 0.9, index


def test_light_on_dark_gives_the_same_result(digit, dark_on_light, tmp_path):
    light_on_dark = save(photo_of(digit), tmp_path / "seven_inverted.png")
    difference = load_digit_image(light_on_dark).astype(int) - load_digit_image(dark_on_light)
    assert np.abs(difference).max() <= 1


def test_accepts_str_paths(dark_on_light):
    assert np.array_equal(load_digit_image(str(dark_on_light)), load_digit_image(dark_on_light))


def test_bytes_give_exactly_the_files_result(dark_on_light):
    from_bytes = digit_image_from_bytes(dark_on_light.read_bytes(), "the drawing")
    assert np.array_equal(from_bytes, load_digit_image(dark_on_light))


@pytest.mark.parametrize(("data", "problem"), [(b"", "empty"), (b"not a picture", "not an image")])
def test_bad_bytes_are_named_in_the_message(data, problem):
    with pytest.raises(UserError, match=f"'the drawing'.*{problem}"):
        digit_image_from_bytes(data, "the drawing")


def variants(digit):
    """(name, writer) pairs: each writer saves the dark-on-light digit in another pixel format."""
    ink = photo_of(digit)
    paper = 255 - ink

    def rgba_dark_ink(path):
        # Transparent background, black strokes whose opacity is the ink.
        rgba = np.zeros(ink.shape + (4,), dtype=np.uint8)
        rgba[..., 3] = ink
        return save(rgba, path)

    def rgba_light_ink(path):
        # Transparent background, white strokes: must not vanish on a white backdrop.
        rgba = np.full(ink.shape + (4,), 255, dtype=np.uint8)
        rgba[..., 3] = ink
        return save(rgba, path)

    def palette(path):
        Image.fromarray(paper).convert("P").save(path)
        return path

    def palette_transparent(path):
        # Index 0 (the paper) is the transparent colour.
        image = Image.fromarray((ink > 127).astype(np.uint8), mode="P")
        image.putpalette([255, 255, 255, 0, 0, 0])
        image.save(path, transparency=0)
        return path

    def gray16(path):
        # Full 16-bit range: a naive 8-bit conversion would clip it to all white.
        return save(paper.astype(np.uint16) * 257, path)

    def rgb_colored(path):
        # Blue ink on yellowish paper.
        weight = ink[..., None] / 255.0
        paper_rgb, ink_rgb = np.array([250, 240, 200]), np.array([20, 30, 160])
        return save(np.round(paper_rgb * (1 - weight) + ink_rgb * weight).astype(np.uint8), path)

    def bilevel(path):
        Image.fromarray(paper).convert("1", dither=Image.Dither.NONE).save(path)
        return path

    def cmyk_jpeg(path):
        Image.fromarray(paper).convert("CMYK").save(path, quality=95)
        return path

    def la_premultiplied_tiff(path):
        # Gray with associated (premultiplied) alpha: Pillow opens it as mode "La".
        opaque = np.dstack([paper, np.full_like(paper, 255)])
        data = encoded(Image.fromarray(opaque, mode="LA"), "TIFF")
        unassociated = struct.pack("<HHIH", 338, 3, 1, 2)  # ExtraSamples: 2, unassociated
        path.write_bytes(data.replace(unassociated, struct.pack("<HHIH", 338, 3, 1, 1)))
        return path

    def animated(path):
        # Many frames (alternating, so none is merged): only the first is decoded.
        first, rest = Image.fromarray(paper), Image.fromarray(255 - paper)
        first.save(path, save_all=True, append_images=[rest, first] * 50)
        return path

    def exif_bad_orientation_jpeg(path):
        exif = Image.Exif()
        exif[0x0112] = 99  # no such orientation: the picture is shown as stored
        Image.fromarray(paper).save(path, quality=95, exif=exif)
        return path

    def exif_rotated_jpeg(path):
        # Pixels stored rotated; orientation 6 says "rotate 90 degrees clockwise to show".
        exif = Image.Exif()
        exif[0x0112] = 6
        stored = Image.fromarray(paper).transpose(Image.Transpose.ROTATE_90)
        stored.save(path, quality=95, exif=exif)
        return path

    return {
        "rgba_dark_ink.png": rgba_dark_ink,
        "rgba_light_ink.png": rgba_light_ink,
        "palette.png": palette,
        "palette_transparent.png": palette_transparent,
        "gray16.png": gray16,
        "rgb_colored.png": rgb_colored,
        "bilevel.png": bilevel,
        "cmyk.jpg": cmyk_jpeg,
        "exif_rotated.jpg": exif_rotated_jpeg,
        "la_premultiplied.tif": la_premultiplied_tiff,
        "animated.gif": animated,
        "animated.png": animated,
        "exif_bad_orientation.jpg": exif_bad_orientation_jpeg,
    }


LOSSLESS_VARIANTS = {
    "rgba_dark_ink.png",
    "rgba_light_ink.png",
    "palette.png",
    "gray16.png",
    "la_premultiplied.tif",
    "animated.png",
}


@pytest.mark.parametrize("name", sorted(variants(np.zeros((28, 28), dtype=np.uint8))))
def test_pixel_formats_give_the_same_digit(digit, dark_on_light, tmp_path, name):
    reference = load_digit_image(dark_on_light)
    path = variants(digit)[name](tmp_path / name)
    with Image.open(path) as opened:  # the file really is in the format under test
        expected_mode = {
            "palette.png": "P",
            "palette_transparent.png": "P",
            "bilevel.png": "1",
            "la_premultiplied.tif": "La",
        }
        assert opened.mode == expected_mode.get(name, opened.mode)
        if name.startswith("animated"):
            assert opened.n_frames == 101
        if name == "gray16.png":
            assert opened.mode.startswith("I")
    prepared = load_digit_image(path)
    assert correlation(prepared, reference) > 0.95
    if name in LOSSLESS_VARIANTS:  # same gray levels: the same picture, up to rounding
        assert np.abs(prepared.astype(int) - reference).max() <= 2


def test_large_photos_are_shrunk_while_decoding(digit, tmp_path):
    # About 5 megapixels: JPEG decodes at reduced scale (draft), PNG is box-reduced.
    paper = 255 - photo_of(digit, factor=60, height=2100, width=2500, top=200, left=300)
    for name in ("big.jpg", "big.png"):
        assert correlation(load_digit_image(save(paper, tmp_path / name)), digit) > 0.9, name


@pytest.mark.parametrize("bar_height, bar_width, box", [(150, 30, (20, 4)), (30, 120, (5, 20))])
def test_larger_side_of_the_box_becomes_20_pixels(tmp_path, bar_height, bar_width, box):
    paper = np.full((260, 300), 255, dtype=np.uint8)
    paper[40 : 40 + bar_height, 70 : 70 + bar_width] = 0
    prepared = load_digit_image(save(paper, tmp_path / "bar.png"))
    rows = np.flatnonzero(prepared.max(axis=1) > 0)
    cols = np.flatnonzero(prepared.max(axis=0) > 0)
    assert (rows.size, cols.size) == box
    assert rows[-1] - rows[0] + 1 == box[0] and cols[-1] - cols[0] + 1 == box[1]
    row, col = center_of_mass(prepared)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5


def test_faint_noise_and_a_far_speck_do_not_grow_the_box(digit, tmp_path):
    rng = np.random.default_rng(0)
    paper = (255 - photo_of(digit)).astype(np.int16)
    paper -= rng.integers(0, 12, size=paper.shape, dtype=np.int16)  # paper texture
    paper[170:172, 225:227] = 0  # a 2x2 speck of dust far from the digit
    path = save(np.clip(paper, 0, 255).astype(np.uint8), tmp_path / "noisy.png")
    assert correlation(load_digit_image(path), digit) > 0.9


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="nowhere.png.*no such file"):
        load_digit_image(tmp_path / "nowhere.png")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is a text file, not a picture\n")
    with pytest.raises(UserError, match="notes.png.*not an image"):
        load_digit_image(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(UserError, match="empty.png.*empty"):
        load_digit_image(path)


def test_truncated_png(dark_on_light):
    data = dark_on_light.read_bytes()
    dark_on_light.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="seven.png.*truncated"):
        load_digit_image(dark_on_light)


@pytest.mark.parametrize(
    "name, pixels",
    [
        ("white.png", np.full((50, 40), 255, dtype=np.uint8)),
        ("black.png", np.zeros((50, 40), dtype=np.uint8)),
        ("gray.png", np.full((50, 40), 128, dtype=np.uint8)),
        ("faint.png", np.r_[np.full((25, 40), 250), np.full((25, 40), 245)].astype(np.uint8)),
        ("transparent.png", np.zeros((50, 40, 4), dtype=np.uint8)),
    ],
)
def test_no_digit_found(tmp_path, name, pixels):
    with pytest.raises(UserError, match=f"{name}.*no digit found"):
        load_digit_image(save(pixels, tmp_path / name))


@pytest.mark.parametrize("shape", [(1, 1), (7, 7), (100, 5)])
def test_too_small(tmp_path, shape):
    pixels = np.full(shape, 255, dtype=np.uint8)
    pixels[0, 0] = 0
    with pytest.raises(UserError, match="tiny.png.*too small"):
        load_digit_image(save(pixels, tmp_path / "tiny.png"))


@pytest.mark.parametrize(
    "width, height",
    [
        (8_000, 6_000),  # 48 megapixels: over our limit, under Pillow's
        (10_000, 10_000),  # over Pillow's warning limit
        (100_000, 100_000),  # over Pillow's error limit
    ],
)
def test_huge_picture_refused_before_decoding(tmp_path, width, height):
    path = png_header_only(tmp_path / "huge.png", width, height)
    assert path.stat().st_size < 10_000
    with pytest.raises(UserError, match="huge.png.*too large"):
        load_digit_image(path)


def one_line_refusal(call):
    """The message of the UserError that ``call()`` raises, checked to be one printable line."""
    with pytest.raises(UserError) as refused:
        call()
    message = str(refused.value)
    assert message.isprintable(), repr(message)  # no line break, no terminal escape
    return message


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_file_is_one_line_naming_the_file_and_the_problem(tmp_path, name):
    data, problem = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(data)
    message = one_line_refusal(lambda: load_digit_image(path))
    assert re.search(f"'{re.escape(str(path))}': .*{problem}", message), message
    from_bytes = one_line_refusal(lambda: digit_image_from_bytes(data, "the upload"))
    assert from_bytes == message.replace(str(path), "the upload")


@pytest.mark.parametrize(
    "error",
    [
        struct.error("unpack requires a buffer of 4 bytes"),
        EOFError(),
        SyntaxError("not a TIFF file"),
        KeyError("PhotometricInterpretation"),
        IndexError("list index out of range"),
        ZeroDivisionError("division by zero"),
        OSError("image file is truncated"),
        Image.DecompressionBombError("Image size exceeds limit"),
    ],
    ids=lambda error: f"{type(error).__module__}.{type(error).__qualname__}",
)
@pytest.mark.parametrize("step", ["open", "decode"])
def test_any_exception_pillow_raises_is_a_one_line_refusal(dark_on_light, monkeypatch, error, step):
    def fail(*args, **kwargs):
        raise error

    if step == "open":
        monkeypatch.setattr(digit_image.Image, "open", fail)
    else:
        monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    message = one_line_refusal(lambda: load_digit_image(dark_on_light))
    assert "seven.png" in message and (str(error) or type(error).__name__) in message


def test_pillows_warnings_stay_out_of_the_output(tmp_path):
    # A TIFF cut inside its tags: Pillow warns "Corrupt EXIF data" before refusing it.
    path = tmp_path / "cut.tif"
    path.write_bytes(tiff_with_rational_strip_offsets()[:100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        one_line_refusal(lambda: load_digit_image(path))
    assert caught == []


def test_a_file_name_with_control_characters_stays_one_line(tmp_path):
    path = tmp_path / "seven\n\x1b[2J.png"  # a line break, then "clear the screen"
    path.write_bytes(b"not a picture")
    message = one_line_refusal(lambda: load_digit_image(path))
    assert "seven\\x0a\\x1b[2J.png" in message


def test_a_huge_reason_from_pillow_is_cut_short(dark_on_light, monkeypatch):
    def fail(*args, **kwargs):
        raise ValueError("x" * 100_000)

    monkeypatch.setattr(digit_image.Image, "open", fail)
    message = one_line_refusal(lambda: load_digit_image(dark_on_light))
    assert len(message) < 500 and "xxx..." in message


def test_predict_on_a_hostile_picture_is_one_line_on_stderr(tmp_path):
    path = tmp_path / "hostile.png"
    path.write_bytes(HOSTILE["ztxt_bomb.png"][0])
    done = subprocess.run(
        [sys.executable, "main.py", "predict", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert str(path) in done.stderr and "MAX_TEXT_CHUNK" in done.stderr


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_digit_image(tmp_path)


def test_prepared_path_sits_beside_the_input():
    assert prepared_path("photos/seven.jpg") == Path("photos/seven.prepared.png")
    assert prepared_path(Path("/a/b/digit.PNG")) == Path("/a/b/digit.prepared.png")


def test_to_png_round_trips_atomically(digit, tmp_path):
    target = tmp_path / "seven.prepared.png"
    target.write_bytes(b"old content")  # replaced, not appended to
    assert to_png(digit, target) == target
    with Image.open(target) as reopened:
        assert reopened.format == "PNG" and reopened.mode == "L"
        assert np.array_equal(np.asarray(reopened), digit)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temp file left


def test_to_png_reports_an_unwritable_place(digit, tmp_path):
    with pytest.raises(UserError, match="missing_dir.*cannot write"):
        to_png(digit, tmp_path / "missing_dir" / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_to_png_rejects_a_non_image_array(tmp_path):
    with pytest.raises(ValueError, match="2-D uint8"):
        to_png(np.zeros((28, 28), dtype=np.float32), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
