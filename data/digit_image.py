"""Turn a user's picture of one handwritten digit into a 28x28 MNIST-like image.

MNIST digits are white ink on a black background, scaled so the larger side of
their bounding box is 20 px, then placed in a 28x28 field so that the centre of
mass of the intensities sits at pixel (14, 14). ``load_digit_image`` repeats
those steps on an arbitrary PNG or JPEG file, ``digit_image_from_bytes`` on the
bytes of one (a picture drawn on the live page, ``serve``); ``to_png`` and
``prepared_path`` save the result beside the input for ``predict --show``.
"""

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data.errors import UserError, printable
from data.files import atomic_write

CANVAS_SIDE = 28  # MNIST field
BOX_SIDE = 20  # larger side of the digit's bounding box in MNIST
MIN_SIDE = 8  # smaller pictures cannot hold a recognisable digit
MAX_PIXELS = 40_000_000  # refuse before decoding: bounds memory use
WORK_SIDE = 1024  # decode/shrink to about this long side; the digit ends up 20 px anyway
MIN_CONTRAST = 0.1  # ink must differ from the background by 10% of full scale
INK_FRACTION = 0.2  # ink fainter than 20% of the strongest ink is background noise
MERGE_GAP = 0.3  # ink this far from the digit (relative to its size) is a separate speck
REASON_CHARS = 200  # Pillow's own words in a message are cut to this many characters

# PILLOW_REFUSALS: Pillow's plugins report a corrupt or hostile file with almost any
# exception type: ValueError (a PNG text or ICC chunk that inflates past
# PngImagePlugin.MAX_TEXT_CHUNK, a PPM maxval of 0), TypeError and struct.error (TIFF
# tags), NotImplementedError (DDS), EOFError, SyntaxError, OSError (truncated data).
# Around Pillow's calls, and only there, any Exception is the file's fault, not a bug.

# Modes with an alpha channel ("a": premultiplied) once "La" is made "LA".
ALPHA_MODES = ("LA", "PA", "RGBA", "RGBa")

# ITU-R 601 luma, the weights Pillow's own "L" conversion uses.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])

_ADVICE = "give a PNG or JPEG photo or scan of one handwritten digit"
_SHRINK_ADVICE = (
    f"crop or shrink it around the digit, to under {MAX_PIXELS // 1_000_000} megapixels"
)


def _fail(path, problem, advice=_ADVICE):
    """Build the one-line UserError for the picture ``path`` (a path, or a name for messages)."""
    return UserError(f"digit image '{printable(str(path))}': {problem}; {advice}")


def _too_large(path, err):
    """The refusal of a picture over Pillow's own size limit (its bomb error or warning)."""
    return _fail(path, f"picture too large ({_reason(err).rstrip('.')})", _SHRINK_ADVICE)


def _reason(err):
    """Pillow's words for what went wrong, as a short line (the type's name when it gives none)."""
    return printable(str(err) or type(err).__name__, REASON_CHARS)


@contextlib.contextmanager
def _pillow_quiet():
    """Inside: Pillow's size warning raises, and its other warnings are dropped.

    Pillow warns (a DecompressionBombWarning) for pictures above its own limit: that
    means "huge picture" here. Its other warnings (corrupt EXIF, odd chunks) would add
    lines to what must be one line; a file that still decodes is judged by its pixels.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _open_checked(source, path):
    """Open ``source`` with Pillow, reading only the header, and refuse bad files early.

    Args:
        source: Path of an existing, non-empty file, or a binary file object.
        path: the picture's name in messages (its path, for a file).
    Returns:
        An opened, not yet decoded ``PIL.Image.Image`` (JPEGs set to decode at a reduced scale).
    """
    try:
        with _pillow_quiet():
            image = Image.open(source)
            # JPEG only: decode directly at 1/2, 1/4 or 1/8 scale, cheaply and with little memory.
            image.draft(None, (WORK_SIDE, WORK_SIDE))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _too_large(path, err) from err
    except UnidentifiedImageError as err:
        raise _fail(path, "not an image Pillow can read (unknown or corrupt format)") from err
    except OSError as err:
        raise _fail(path, f"cannot read the file ({_reason(err)})") from err
    except Exception as err:  # see PILLOW_REFUSALS
        raise _fail(path, f"a corrupt or hostile file, Pillow refused it ({_reason(err)})") from err
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise _fail(
            path,
            f"picture too large ({width}x{height} = {width * height / 1e6:.1f} megapixels, "
            f"the limit is {MAX_PIXELS / 1e6:.0f})",
            _SHRINK_ADVICE,
        )
    if width < MIN_SIDE or height < MIN_SIDE:
        image.close()
        raise _fail(
            path,
            f"picture too small ({width}x{height} pixels, at least {MIN_SIDE}x{MIN_SIDE} needed)",
            "give a larger picture of the digit",
        )
    return image


def _decode_small(image):
    """Decode ``image``, upright it and shrink it to a long side of about ``WORK_SIDE``.

    Args:
        image: An opened ``PIL.Image.Image`` in any mode.
    Returns:
        A ``PIL.Image.Image`` in mode "L", "RGB", "RGBA", "I" or "F".
    """
    image.load()
    image = ImageOps.exif_transpose(image)
    if image.mode == "La":  # premultiplied alpha (a TIFF): Pillow converts it only to LA
        image = image.convert("LA")
    if image.mode.startswith("I;16"):
        image = image.convert("I")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode in ALPHA_MODES or (
        image.mode not in ("I", "F") and "transparency" in image.info
    ):
        image = image.convert("RGBA")  # or P/L/RGB with a transparent colour
    elif image.mode not in ("L", "RGB", "I", "F"):
        image = image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV
    factor = -(-max(image.size) // WORK_SIDE)
    # Box-average reduction: antialiased, and keeps the float arrays below small.
    return image.reduce(factor) if factor > 1 else image


def _gray_levels(image):
    """Convert a decoded picture to gray levels in [0, 1], flattening any transparency.

    Args:
        image: ``PIL.Image.Image`` in mode "L", "RGB", "RGBA", "I" or "F".
    Returns:
        gray (H, W) float64 in [0, 1] (0 black, 1 white), or None when fully transparent.
    """
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode in ("I", "F"):
        # 16-bit PNGs arrive as "I" (0..65535); float pictures are usually 0..1.
        peak = float(pixels.max())
        full_scale = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else max(peak, 65535.0)
        return np.clip(pixels / full_scale, 0.0, 1.0)
    pixels /= 255.0
    if image.mode == "L":
        return pixels
    if image.mode == "RGB":
        return pixels @ LUMA_WEIGHTS
    gray, alpha = pixels[..., :3] @ LUMA_WEIGHTS, pixels[..., 3]
    opaque = alpha > 0.5
    if not opaque.any():
        return None
    # Mostly opaque: the opaque part holds its own background, so fill the holes
    # with it. Mostly transparent: the opaque part is the ink, so fill with the
    # opposite extreme (white behind dark ink, black behind light ink).
    opaque_median = float(np.median(gray[opaque]))
    if opaque.mean() > 0.5:
        backdrop = opaque_median
    else:
        backdrop = 1.0 if opaque_median < 0.5 else 0.0
    return gray * alpha + backdrop * (1.0 - alpha)


def _ink(gray):
    """Ink strength: how far each pixel is from the background, light-on-dark, in [0, 1].

    The background level is the median of the picture's outer ring; if it is
    brighter than the middle of the picture's range the digit is dark on light.

    Args:
        gray (H, W) float64 in [0, 1].
    Returns:
        ink (H, W) float64 >= 0 (0 background).
    """
    ring = max(1, min(gray.shape) // 50)
    border = np.concatenate(
        [
            gray[:ring].ravel(),
            gray[-ring:].ravel(),
            gray[:, :ring].ravel(),
            gray[:, -ring:].ravel(),
        ]
    )
    background = float(np.median(border))
    mid_range = 0.5 * (float(gray.min()) + float(gray.max()))
    ink = background - gray if background > mid_range else gray - background
    return np.maximum(ink, 0.0)


def _main_run(profile):
    """The digit's extent along one axis: the heaviest run of ink plus the runs near it.

    A run is a stretch of consecutive positions holding ink. Starting from the
    heaviest, neighbouring runs are merged while the gap to them is at most
    ``MERGE_GAP`` times the extent merged so far, so the parts of a broken
    stroke join while a speck of dust far away does not.

    Args:
        profile (L,) float64 >= 0 with a positive sum (ink summed across the other axis).
    Returns:
        (start, stop) ints, a half-open index range.
    """
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (profile > 0).astype(np.int8), [0]])))
    starts, stops = edges[0::2], edges[1::2]
    heaviest = int(np.argmax(np.add.reduceat(profile, starts)))
    before, after = heaviest - 1, heaviest + 1
    start, stop = int(starts[heaviest]), int(stops[heaviest])
    # A loop over runs, not pixels: there are few of them.
    while True:
        reach = max(1.0, MERGE_GAP * (stop - start))
        if before >= 0 and start - stops[before] <= reach:
            start, before = int(starts[before]), before - 1
        elif after < starts.size and starts[after] - stop <= reach:
            stop, after = int(stops[after]), after + 1
        else:
            return start, stop


def _crop_digit(ink):
    """Crop the digit's bounding box out of an ink map, ignoring faint noise and far specks.

    Args:
        ink (H, W) float64 >= 0 whose maximum is at least ``MIN_CONTRAST``.
    Returns:
        digit (h, w) float64 in [0, 1], the box content with the noise floor removed.
    """
    strong = np.maximum(ink - INK_FRACTION * float(ink.max()), 0.0)
    rows, cols = (0, strong.shape[0]), (0, strong.shape[1])
    # Twice round: a speck dropped from the columns then no longer widens the rows.
    for _ in range(2):
        rows = _main_run(strong[:, cols[0] : cols[1]].sum(axis=1))
        cols = _main_run(strong[rows[0] : rows[1]].sum(axis=0))
    box = strong[rows[0] : rows[1], cols[0] : cols[1]]
    return box / box.max()


def _fit_box(digit):
    """Resize so the larger side is ``BOX_SIDE`` px, keeping the aspect ratio (Lanczos).

    Args:
        digit (h, w) float64 in [0, 1].
    Returns:
        (h', w') float32 in [0, 1] with max(h', w') == BOX_SIDE.
    """
    height, width = digit.shape
    scale = BOX_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(digit.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    # Lanczos rings slightly below 0 and above the peak: clip, then restore full-strength ink.
    fitted = np.clip(np.asarray(resized), 0.0, None)
    return fitted / fitted.max()


def _center_of_mass(digit):
    """Place ``digit`` in a 28x28 field with its intensity centre of mass at (14, 14).

    Args:
        digit (h, w) float32 in [0, 1], h and w at most ``CANVAS_SIDE``.
    Returns:
        canvas (28, 28) float32 in [0, 1]; parts shifted past the border are cut off.
    """
    height, width = digit.shape
    total = digit.sum()
    row_mass = digit.sum(axis=1) @ np.arange(height) / total
    col_mass = digit.sum(axis=0) @ np.arange(width) / total
    center = CANVAS_SIDE // 2
    top, left = round(center - row_mass), round(center - col_mass)
    canvas = np.zeros((CANVAS_SIDE, CANVAS_SIDE), dtype=digit.dtype)
    # Destination and source windows clipped to the canvas.
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + height, CANVAS_SIDE), min(left + width, CANVAS_SIDE)
    canvas[r0:r1, c0:c1] = digit[r0 - top : r1 - top, c0 - left : c1 - left]
    return canvas


def load_digit_image(path):
    """Read a picture of one handwritten digit and prepare it the MNIST way.

    Decodes with Pillow (any mode: alpha, palette, 16-bit, bilevel, CMYK; EXIF
    orientation applied), converts to gray, inverts dark-on-light pictures,
    crops the digit, scales its larger side to 20 px and centres its mass in a
    28x28 black field.

    Args:
        path: str or Path of a PNG or JPEG (any format Pillow reads works).
    Returns:
        image (28, 28) uint8: 0 background, 255 strongest ink (white digit on black).
    Raises:
        UserError: missing, empty, unreadable, truncated, too small or too large
            picture, or no digit found in it.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file", "check the path")
    if path.stat().st_size == 0:
        raise _fail(path, "the file is empty (0 bytes)")
    return _prepare(path, path)


def digit_image_from_bytes(data, name):
    """``load_digit_image`` for a picture held in memory: the same steps, the same result.

    Args:
        data: bytes of a PNG or JPEG file (any format Pillow reads works).
        name: str naming the picture in error messages (e.g. "the drawing").
    Returns:
        image (28, 28) uint8, as ``load_digit_image`` returns for a file of these bytes.
    Raises:
        UserError: as ``load_digit_image`` (an empty ``data`` is an empty file).
    """
    if len(data) == 0:
        raise _fail(name, "the file is empty (0 bytes)")
    return _prepare(io.BytesIO(data), name)


def _prepare(source, path):
    """Decode, check and prepare one picture (see ``load_digit_image``).

    Args:
        source: Path of a non-empty file, or a binary file object.
        path: the picture's name in messages.
    Returns:
        image (28, 28) uint8.
    """
    image = _open_checked(source, path)
    try:
        with image, _pillow_quiet():
            small = _decode_small(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # A later frame or tile can be larger than the header said.
        raise _too_large(path, err) from err
    except Exception as err:  # see PILLOW_REFUSALS
        raise _fail(
            path, f"cannot decode the picture, truncated or corrupt ({_reason(err)})"
        ) from err
    # NaN compares false with everything and infinity survives the clipping to [0, 1]:
    # either would slip through to a prediction. (Averaging values beyond float32's
    # range in _decode_small's reduction also makes infinity, refused here too.)
    if small.mode == "F" and not np.isfinite(np.asarray(small)).all():
        raise _fail(
            path, "some pixels are not numbers (NaN or infinity in a floating-point picture)"
        )
    gray = _gray_levels(small)
    ink = None if gray is None else _ink(gray)
    if ink is None or ink.max() < MIN_CONTRAST:
        raise _fail(
            path,
            "no digit found (the picture is blank or of one uniform colour)",
            "give a picture with a dark digit on a light background or a light digit on dark",
        )
    canvas = _center_of_mass(_fit_box(_crop_digit(ink)))
    return np.round(canvas * 255.0).astype(np.uint8)


def prepared_path(input_path):
    """Where ``predict --show`` saves the prepared image: beside the input.

    Args:
        input_path: str or Path of the user's picture, e.g. ``photos/seven.jpg``.
    Returns:
        Path ``photos/seven.prepared.png``.
    """
    input_path = Path(input_path)
    return input_path.with_name(f"{input_path.stem}.prepared.png")


def to_png(image28, path):
    """Save a prepared image as an 8-bit grayscale PNG, atomically.

    Writes a temporary file in the destination directory, then renames it over
    ``path``, so a reader never sees a half-written file.

    Args:
        image28 (28, 28) uint8: the output of ``load_digit_image``.
        path: str or Path of the PNG to write.
    Returns:
        Path of the written file.
    Raises:
        ValueError: ``image28`` is not a 2-D uint8 array.
        UserError: the file cannot be written.
    """
    image28 = np.asarray(image28)
    if image28.ndim != 2 or image28.dtype != np.uint8:
        raise ValueError(
            f"to_png needs a 2-D uint8 image, got shape {image28.shape} dtype {image28.dtype}"
        )
    return atomic_write(path, lambda tmp: Image.fromarray(image28).save(tmp, format="PNG"))
