"""Making a thumbnail from image bytes, with Pillow, safely (see `app.domain.images`).

A thumbnail keeps the aspect ratio, fits in `size` x `size`, and is WebP.
"""

from __future__ import annotations

import io

from app.domain.images import DEFAULT_MAX_PIXELS, ImageError, open_image

SIZES = (128, 256, 512)
MEDIA_TYPE = "image/webp"
QUALITY = 80


def make_thumbnail(data: bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A WebP thumbnail of the image in `data`, at most `size` pixels on its longer side.

    Raises:
        ImageError: for bytes Pillow cannot decode, a format the service does not take, or
            more than `max_pixels` pixels.
    """
    with open_image(data, max_pixels=max_pixels) as image:
        try:
            image.draft("RGB", (size, size))
            image.thumbnail((size, size))
            frame = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        except (OSError, ValueError, SyntaxError, EOFError):
            raise ImageError("not an image that can be decoded") from None
    output = io.BytesIO()
    frame.save(output, format="WEBP", quality=QUALITY)
    return output.getvalue()
