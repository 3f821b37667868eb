"""Reading image bytes with Pillow, safely, and what is learnt from them.

Every image the service stores or shows is decoded here: `describe_image` when an image is
fetched for a row (its size, format and perceptual hash), `app.domain.thumbnails` when a
thumbnail is made. Both open images through `open_image`, which

- opens only the formats the fetcher recognises by their bytes (`FORMATS`: JPEG, PNG, GIF,
  WebP, BMP, TIFF, AVIF, and HEIC/HEIF through the `pillow-heif` plugin), never the dozens of
  other formats Pillow knows;
- refuses an image of more than `max_pixels` pixels from its header, before any pixel is
  decoded (a decompression bomb of a few kilobytes can declare billions of pixels), and turns
  Pillow's own bomb guard into the same refusal;
- turns every decoding failure (truncated data, a corrupt header) into `ImageError`.

The perceptual hash is a 64-bit difference hash (dHash): the image, in grey, is shrunk to 9 x 8
pixels and each bit says whether a pixel is brighter than its right neighbour. Re-encoding,
resizing or light edits change few bits; different pictures differ in about half of them. The
Hamming distance between two hashes (how many bits differ) is how near two images are.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import pillow_heif
from PIL import Image, UnidentifiedImageError

pillow_heif.register_heif_opener()

DEFAULT_MAX_PIXELS: Final = 64_000_000
"""The largest image (in pixels) decoded, unless IMAGE_MAX_PIXELS says otherwise."""
FORMATS: Final = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "HEIF")
"""Pillow's names of the formats opened; `ImageFacts.format` is one of them in lower case."""
HASH_BITS: Final = 64
_HASH_GRID: Final = (9, 8)
_SIGN: Final = 1 << (HASH_BITS - 1)


class ImageError(ValueError):
    """Bytes that are not an image Pillow can decode; the message is safe to show."""


class TooManyPixels(ImageError):
    """An image whose declared size is over the pixel cap."""


@dataclass(frozen=True)
class ImageFacts:
    """What the service records about an image.

    Attributes:
        width: Width in pixels.
        height: Height in pixels.
        format: `png`, `jpeg`, `gif`, `webp`, `bmp`, `tiff`, `avif` or `heif`.
        dhash: The 64-bit difference hash as PostgreSQL stores it (a signed 64-bit integer).
    """

    width: int
    height: int
    format: str
    dhash: int


@contextmanager
def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Image.Image]:
    """Open `data` as an image under the rules of the module documentation.

    Raises:
        TooManyPixels: when the image declares more than `max_pixels` pixels.
        ImageError: when the bytes are not a decodable image of `FORMATS`.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                if image.width * image.height > max_pixels:
                    raise TooManyPixels(f"the image has more than {max_pixels} pixels")
                yield image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooManyPixels("the image has too many pixels to decode safely") from None
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise ImageError("not an image that can be decoded") from None


def declared_pixels(data: bytes) -> int | None:
    """The pixel count an image's header declares (nothing is decoded), or None when the bytes
    do not open as an image of `FORMATS`."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            return int(image.width * image.height)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None


def signed_hash(unsigned: int) -> int:
    """A 64-bit hash as a signed integer (PostgreSQL's `bigint`)."""
    return unsigned - (1 << HASH_BITS) if unsigned & _SIGN else unsigned


def hash_hex(stored: int) -> str:
    """A stored (signed) hash as 16 lowercase hex digits."""
    return f"{stored & ((1 << HASH_BITS) - 1):016x}"


def hash_from_hex(written: str) -> int:
    """16 hex digits as a stored (signed) hash.

    Raises:
        ValueError: when `written` is not 16 hex digits.
    """
    if len(written) != HASH_BITS // 4:
        raise ValueError("a hash is 16 hex digits")
    return signed_hash(int(written, 16))


def _difference_hash(image: Image.Image) -> int:
    """The dHash of `image` (first frame), unsigned."""
    image.draft("L", (_HASH_GRID[0] * 8, _HASH_GRID[1] * 8))
    grey = image.convert("L").resize(_HASH_GRID, Image.Resampling.LANCZOS, reducing_gap=3.0)
    pixels = grey.tobytes()
    width = _HASH_GRID[0]
    bits = 0
    for row in range(_HASH_GRID[1]):
        line = pixels[row * width : (row + 1) * width]
        for left, right in zip(line, line[1:]):
            bits = (bits << 1) | (left > right)
    return bits


def describe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageFacts:
    """Decode `data` and return its size, format and difference hash.

    The image is decoded for real (at a reduced scale where the format allows it, as JPEG
    does), so a file that only starts like an image is refused.

    Raises:
        TooManyPixels, ImageError: as `open_image`.
    """
    with open_image(data, max_pixels=max_pixels) as image:
        width, height, kind = image.width, image.height, str(image.format).lower()
        try:
            dhash = _difference_hash(image)
        except (OSError, ValueError, SyntaxError, EOFError):
            raise ImageError("not an image that can be decoded") from None
    return ImageFacts(width=width, height=height, format=kind, dhash=signed_hash(dhash))
