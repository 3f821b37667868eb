"""The loopback image server of the benchmark and the load run: a distinct PNG at every path.

It is the test suite's `ImageServer` (threaded, TCP_NODELAY), with one more kind of route:
`/img/<tag>.png` answers `png_bytes(tag)`, so any number of distinct images can be asked for
without registering them first (the load generator runs in another process).
"""

from __future__ import annotations

from tests.image_server import ImageServer, Route, png_bytes

PREFIX, SUFFIX = "/img/", ".png"


class GeneratedImages(ImageServer):
    """An `ImageServer` that also serves a generated PNG at `/img/<tag>.png` for any tag."""

    def _route(self, path: str) -> Route:
        if path.startswith(PREFIX) and path.endswith(SUFFIX):
            tag = path.removeprefix(PREFIX).removesuffix(SUFFIX)
            return Route(body=png_bytes(tag=tag), content_type="image/png")
        return super()._route(path)

    def image_urls(self, tags: list[str]) -> list[str]:
        """The URL of the generated image of each tag."""
        return [self.url(f"{PREFIX}{tag}{SUFFIX}") for tag in tags]


def start_images() -> GeneratedImages:
    """A started `GeneratedImages` on 127.0.0.1."""
    server = GeneratedImages()
    server.start()
    return server
