"""Hostile picture files, built in memory, for the loader's and the server's tests.

Each one made Pillow or the pixel code raise something other than the loader's one-line
UserError (a traceback on the command line, a 500 from the server), or, for the float
TIFFs with NaN or infinity, slipped through to a prediction. ``HOSTILE`` maps a file
name to (its bytes, a regular expression for the problem the refusal must name).
"""

import io
import struct
import zlib

import numpy as np
from PIL import Image, PngImagePlugin


def chunk(kind, data):
    """One PNG chunk: length, type, data, CRC."""
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def paper():
    """(60, 60) uint8: a dark bar (a "1") on white paper, a picture the loader reads."""
    pixels = np.full((60, 60), 255, np.uint8)
    pixels[15:45, 25:35] = 0
    return pixels


def encoded(image, fmt, **options):
    """The bytes of ``image`` saved by Pillow in format ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_with(before=b"", after=b""):
    """The paper as an 8-bit gray PNG, with extra chunks ``before`` and ``after`` its IDAT."""
    pixels = paper()
    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + before
        + chunk(b"IDAT", zlib.compress(rows))
        + after
        + chunk(b"IEND", b"")
    )


# Text that inflates to just past Pillow's limit for one chunk: about 1 kB compressed.
INFLATES_TOO_FAR = zlib.compress(b"a" * (PngImagePlugin.MAX_TEXT_CHUNK + 1))
# Text that inflates to just under that limit, repeated until all text is past Pillow's total.
JUST_UNDER = zlib.compress(b"a" * (PngImagePlugin.MAX_TEXT_CHUNK - 16))
TEXT_CHUNKS = PngImagePlugin.MAX_TEXT_MEMORY // (PngImagePlugin.MAX_TEXT_CHUNK - 16) + 1


def float_tiff(value):
    """The paper as a float ("F") TIFF in [0, 1], one pixel of the paper set to ``value``."""
    pixels = paper().astype(np.float32) / 255
    pixels[0, 0] = value
    return encoded(Image.fromarray(pixels, mode="F"), "TIFF")


def tiff_with_rational_strip_offsets():
    """A TIFF whose StripOffsets tag is typed RATIONAL: Pillow's decoder raises TypeError."""
    data = encoded(Image.fromarray(paper()), "TIFF")
    entry = struct.pack("<HHI", 273, 4, 1)  # StripOffsets, LONG, one value
    at = data.index(entry)
    return data[:at] + struct.pack("<HH", 273, 5) + data[at + 4 :]


def dds_without_pixel_format():
    """A DDS whose pixel-format flags are 0: Pillow raises NotImplementedError on opening."""
    data = bytearray(encoded(Image.fromarray(paper()).convert("RGBA"), "DDS"))
    data[80:84] = bytes(4)  # magic, 7 header fields, 11 reserved, then the format's size, flags
    return bytes(data)


HOSTILE = {
    "ztxt_bomb.png": (
        png_with(before=chunk(b"zTXt", b"k\x00\x00" + INFLATES_TOO_FAR)),
        "Pillow refused it.*MAX_TEXT_CHUNK",
    ),
    "itxt_bomb.png": (
        png_with(before=chunk(b"iTXt", b"k\x00\x01\x00\x00\x00" + INFLATES_TOO_FAR)),
        "Pillow refused it.*MAX_TEXT_CHUNK",
    ),
    "icc_bomb.png": (
        png_with(before=chunk(b"iCCP", b"profile\x00\x00" + INFLATES_TOO_FAR)),
        "Pillow refused it.*MAX_TEXT_CHUNK",
    ),
    "text_past_total.png": (
        png_with(before=chunk(b"zTXt", b"k\x00\x00" + JUST_UNDER) * TEXT_CHUNKS),
        "Pillow refused it.*MAX_TEXT_MEMORY",
    ),
    "ztxt_bomb_after_pixels.png": (
        png_with(after=chunk(b"zTXt", b"k\x00\x00" + INFLATES_TOO_FAR)),
        "cannot decode.*MAX_TEXT_CHUNK",
    ),
    "nan.tif": (float_tiff(np.nan), "not numbers.*NaN or infinity"),
    "infinity.tif": (float_tiff(np.inf), "not numbers.*NaN or infinity"),
    "minus_infinity.tif": (float_tiff(-np.inf), "not numbers.*NaN or infinity"),
    "maxval_zero.pgm": (b"P5 60 60 0\n" + bytes(3600), "Pillow refused it.*maxval"),
    "no_texture_formats.ftex": (b"FTEX" + bytes(40), "Pillow refused it.*texture formats"),
    "rational_strip_offsets.tif": (
        tiff_with_rational_strip_offsets(),
        "cannot decode.*IFDRational",
    ),
    "no_pixel_format.dds": (dds_without_pixel_format(), "Pillow refused it.*pixel format"),
}
