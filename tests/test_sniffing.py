"""Image recognition from the first bytes of a body (`sniff_image_type`).

The fetcher tests check the same formats end to end, served with a misleading content type.
"""

from __future__ import annotations

import pytest

from app.services.image_fetch.sniffing import sniff_image_type
from tests.image_server import (
    avif_bytes,
    heic_bytes,
    iso_bmff_bytes,
    jpeg_bytes,
    png_bytes,
    tiff_bytes,
)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (png_bytes(), "png"),
        (jpeg_bytes(), "jpeg"),
        (b"GIF87a" + b"\x00" * 10, "gif"),
        (tiff_bytes(), "tiff"),
        (b"II+\x00\x08\x00\x00\x00", "tiff"),
        (avif_bytes(), "avif"),
        (heic_bytes(), "heic"),
        (iso_bmff_bytes(b"mif1", (b"avif",)), "avif"),
        (b"\xff\xd8", None),
        (b"", None),
        (b"BM", None),
    ],
)
def test_sniff_image_type(head: bytes, kind: str | None) -> None:
    assert sniff_image_type(head) == kind
