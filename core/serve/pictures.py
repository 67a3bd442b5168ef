"""Pictures for the live page: data URLs in, small PNGs of arrays out.

The browser sends a picture as a data URL (``data:image/png;base64,...``); the page
shows arrays as PNG data URLs, scaled up in the browser with crisp pixels.
"""

import base64
import binascii
import io
import math
import re

import numpy as np
from matplotlib import colormaps
from PIL import Image

from data.errors import UserError

DATA_URL = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,(?P<payload>[A-Za-z0-9+/=]*)")
MAP_COLUMNS = 8  # channels per row of a layer's mosaic, as in plot_feature_maps
GAP = 1  # pixels between the channels of a mosaic
LEVELS = 255  # colour levels 0..254 of a value; index 255 is the gap between tiles
GAP_INDEX = LEVELS


def _palette(name):
    """A PNG palette: ``LEVELS`` colours of the matplotlib colour map ``name``, then white."""
    colours = colormaps[name](np.linspace(0.0, 1.0, LEVELS))[:, :3]
    return np.round(np.vstack([colours, [1.0, 1.0, 1.0]]) * 255).astype(np.uint8).tobytes()


# Palette PNGs: a tenth of the time an RGB PNG takes to encode, and a third of the size.
VIRIDIS = _palette("viridis")  # feature maps, as in plot/feature_maps.png
INFERNO = _palette("inferno")  # saliency: bright where a pixel matters


def picture_bytes(data_url):
    """The file bytes inside ``data:image/...;base64,...``.

    Raises UserError when ``data_url`` is not such a string or its base64 is broken.
    """
    found = DATA_URL.fullmatch(data_url) if isinstance(data_url, str) else None
    if found is None:
        raise UserError(
            '"image" must be a data URL of a picture, "data:image/png;base64,..." '
            "(a PNG or JPEG file in base64)"
        )
    try:
        return base64.b64decode(found["payload"], validate=True)
    except (binascii.Error, ValueError) as err:
        raise UserError(f'"image": the base64 after "base64," is broken ({err})') from err


def png_data_url(pixels, palette=None):
    """An (H, W) uint8 array as a PNG data URL: gray levels, or indices into ``palette``."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    size = (pixels.shape[1], pixels.shape[0])
    picture = Image.frombytes("L" if palette is None else "P", size, pixels.tobytes())
    if palette is not None:
        picture.putpalette(palette)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)  # tiny pictures: speed over size
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def levels(values, low, high):
    """``values`` scaled from [low, high] to colour levels 0..LEVELS-1 (uint8).

    A flat map (low == high) is all level 0.
    """
    span = high - low
    scaled = (np.asarray(values, dtype=np.float64) - low) / span if span > 0 else 0 * values
    return np.clip(np.round(scaled * (LEVELS - 1)), 0, LEVELS - 1).astype(np.uint8)


def mosaic(activation):
    """One layer's output for one image as a grid of tiles on one colour scale.

    activation: (C, H, W) maps, one tile per channel, ``MAP_COLUMNS`` to a row;
                or (D,) units, one pixel each, in a near-square block (so 128 units fill a
                card as a map does, not a strip one pixel high).
    Returns (indices (rows', cols') uint8 into a palette, (rows, cols) of tiles,
    (low, high) of the scale): one scale per layer, so a weak channel looks weak beside a
    strong one; ``GAP_INDEX`` between tiles and after the last unit.
    """
    values = np.asarray(activation, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if values.ndim == 1:
        columns = math.ceil(math.sqrt(values.size))
        rows = math.ceil(values.size / columns)
        cells = np.full(rows * columns, GAP_INDEX, np.uint8)
        cells[: values.size] = levels(values, low, high)
        return cells.reshape(rows, columns), (rows, columns), (low, high)
    channels, height, width = values.shape
    columns = min(MAP_COLUMNS, channels)
    rows = math.ceil(channels / columns)
    grid = np.full(
        (rows * (height + GAP) - GAP, columns * (width + GAP) - GAP), GAP_INDEX, np.uint8
    )
    for channel, tile in enumerate(levels(values, low, high)):
        top, left = (channel // columns) * (height + GAP), (channel % columns) * (width + GAP)
        grid[top : top + height, left : left + width] = tile
    return grid, (rows, columns), (low, high)
