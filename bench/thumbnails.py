"""`python -m bench.thumbnails`: how long a cached row thumbnail takes to serve.

Starts `aitrace serve` on a fresh embedded database and a loopback image server with one
1600 x 1200 photo-like PNG, adds a row for it, asks for its 256-pixel thumbnail once (made and
kept: the time of that first request is printed), then times `--requests` GETs of the kept one
(p50; target 10 ms).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

from PIL import Image

from bench.api import API, Api, expect
from tests.aitrace_process import aitrace_process
from tests.image_server import ImageServer

TARGET_MS = 10.0


def photo(width: int, height: int) -> bytes:
    """A PNG of noise over a gradient, so that it compresses like a picture, not a flat colour."""
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 48)
    image = Image.merge("RGB", (gradient, noise, Image.blend(gradient, noise, 0.5)))
    output = io.BytesIO()
    image.save(output, format="PNG")
    return output.getvalue()


def main() -> None:
    """Run the measurement and print it; exit 0 (the target may be missed)."""
    parser = argparse.ArgumentParser(prog="python -m bench.thumbnails")
    parser.add_argument("--requests", type=int, default=300)
    requests = parser.parse_args().requests
    images = ImageServer()
    images.start()
    images.add_image("/photo.png", photo(1600, 1200))
    try:
        with aitrace_process(options=("--no-worker",)) as service:
            api = Api(service.base_url)
            api.setup_admin()
            schema = api.create_schema("Bench thumbnails")
            dataset = api.create_dataset("Bench thumbnails", schema["id"])
            body = {"image_url": images.url("/photo.png"), "data": {}}
            row = expect(api.post_json(f"/datasets/{dataset['id']}/rows", body), 201)
            path = f"{API}/datasets/{dataset['id']}/rows/{row['id']}/thumbnail?size=256"
            started = time.perf_counter()
            made = api.client.get(path)
            first = (time.perf_counter() - started) * 1000
            assert made.status_code == 200, made.text
            samples = []
            for index in range(requests * 2):
                started = time.perf_counter()
                response = api.client.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200
                if index >= requests:
                    samples.append(elapsed)
            api.close()
    finally:
        images.stop()
    p50 = statistics.median(samples)
    print(f"first request (download 1600x1200 PNG, make, keep): {first:.1f} ms")
    print(f"cached thumbnail, {len(made.content):,} bytes: p50 {p50:.2f} ms")
    print(f"(<= {TARGET_MS} ms: {'PASS' if p50 <= TARGET_MS else 'MISS'})")


if __name__ == "__main__":
    main()
