"""Recognising image bytes, whatever the URL or the content type claims.

The fetcher accepts a body only if its first bytes (`SNIFF_BYTES` of them, or fewer for a
shorter body) are those of a JPEG, PNG, GIF, WebP, BMP, TIFF or AVIF/HEIC image. The check
looks at magic numbers and, for BMP and the ISO base media formats, at the header fields that
tell an image from other files sharing the same first bytes (a BMP's DIB header size, the
brands of an `ftyp` box).
"""

from __future__ import annotations

from typing import Final

SNIFF_BYTES: Final = 64
"""How many leading bytes `sniff_image_type` needs to recognise every format."""

_ISO_BMFF_IMAGE_BRANDS: Final = frozenset(
    {b"avif", b"avis", b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"}
)
_BMP_DIB_HEADER_SIZES: Final = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def sniff_image_type(head: bytes) -> str | None:
    """Name the image format from the first bytes of a file.

    Args:
        head: The first bytes of the body (64 are enough; fewer for a shorter body).

    Returns:
        `jpeg`, `png`, `gif`, `webp`, `bmp`, `tiff`, `avif` or `heic`; None when unrecognised.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    if (
        len(head) >= 18
        and head.startswith(b"BM")
        and int.from_bytes(head[14:18], "little") in _BMP_DIB_HEADER_SIZES
    ):
        return "bmp"
    return _sniff_iso_bmff(head)


def _sniff_iso_bmff(head: bytes) -> str | None:
    """Recognise an AVIF/HEIF image by the brands of its leading `ftyp` box."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    if box_size < 16:
        return None
    end = min(box_size, len(head))
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    if any(brand in (b"avif", b"avis") for brand in brands):
        return "avif"
    if any(brand in _ISO_BMFF_IMAGE_BRANDS for brand in brands):
        return "heic"
    return None
