"""Making a thumbnail from image bytes, with Pillow, safely.

Pillow refuses images over `MAX_PIXELS` pixels (its decompression-bomb guard, set here rather
than left at Pillow's global default), and only the formats the fetcher recognises are opened.
A thumbnail keeps the aspect ratio, fits in `size` x `size`, and is WebP.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 64_000_000
"""The largest image (in pixels) a thumbnail is made from."""
SIZES = (128, 256, 512)
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
MEDIA_TYPE = "image/webp"
QUALITY = 80


class ThumbnailError(ValueError):
    """The bytes are not an image Pillow can read, or one too large to read safely."""


def make_thumbnail(data: bytes, size: int) -> bytes:
    """A WebP thumbnail of the image in `data`, at most `size` pixels on its longer side.

    Raises:
        ThumbnailError: for bytes Pillow cannot decode, a format outside `FORMATS`, or more
            than `MAX_PIXELS` pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ThumbnailError(f"the image has more than {MAX_PIXELS} pixels")
                image.draft("RGB", (size, size))
                image.thumbnail((size, size))
                frame = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        output = io.BytesIO()
        frame.save(output, format="WEBP", quality=QUALITY)
        return output.getvalue()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ThumbnailError("not an image that can be decoded") from None
    except (OSError, ValueError, SyntaxError) as error:
        if isinstance(error, ThumbnailError):
            raise
        raise ThumbnailError("not an image that can be decoded") from None
