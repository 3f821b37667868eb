"""Safe download of images named by user-supplied URLs, in four parts.

- `url_policy`: which URLs and addresses may be fetched (normalisation, scheme, length,
  credentials, host syntax, the public-address rule); no network.
- `pinned_connector`: one name lookup per hop, and the aiohttp session whose connector only
  connects to the addresses the fetcher checked (no DNS rebinding).
- `sniffing`: recognising image bytes.
- `fetcher`: `ImageFetcher`, which puts them together: redirects hop by hop, size and time
  caps while streaming, MD5.

The fetcher imports the other three; none of them imports the fetcher. The names used outside
the package are re-exported here.
"""

from app.services.image_fetch.fetcher import FetchedImage, ImageFetcher
from app.services.image_fetch.pinned_connector import Resolver, create_http_client
from app.services.image_fetch.sniffing import sniff_image_type
from app.services.image_fetch.url_policy import (
    CheckedUrl,
    IPAddress,
    check_url,
    is_public_address,
    normalize_url,
)

__all__ = [
    "CheckedUrl",
    "FetchedImage",
    "IPAddress",
    "ImageFetcher",
    "Resolver",
    "check_url",
    "create_http_client",
    "is_public_address",
    "normalize_url",
    "sniff_image_type",
]
