"""Inpaint an image through a Triton Inference Server that serves a `rethined export triton-repo` repository.

    python -m rethined_engine.deploy.triton_client IMAGE MASK -o OUT.png [--url 127.0.0.1:8000] [--model rethined]

Needs `tritonclient[http]`. The image is sent as RGB uint8 (H, W, 3), the mask as its luma uint8 (H, W) (nonzero =
fill, as `rethined inpaint` reads it); the answer is the bytes `Engine().inpaint` returns on the server.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .triton_repo import INPUT_IMAGE, INPUT_MASK, OUTPUT_IMAGE, TritonRepoConfig

DEFAULT_URL = "127.0.0.1:8000"     # tritonserver's default HTTP port
TRITON_UINT8 = "UINT8"


def inpaint_remote(client, image: np.ndarray, mask: np.ndarray,
                   model_name: str = TritonRepoConfig.model_name) -> np.ndarray:
    """One request to `model_name` on `client` (a `tritonclient.http.InferenceServerClient`).

    image: uint8 (H, W, 3) RGB; mask: uint8 (H, W), nonzero = fill. Returns uint8 (H, W, 3). A request the
    server refuses raises `tritonclient.utils.InferenceServerException` with the Engine's message (HTTP 400).
    """
    import tritonclient.http as triton_http

    inputs = []
    for name, array in ((INPUT_IMAGE, image), (INPUT_MASK, mask)):
        tensor = triton_http.InferInput(name, list(array.shape), TRITON_UINT8)
        tensor.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
        inputs.append(tensor)
    outputs = [triton_http.InferRequestedOutput(OUTPUT_IMAGE, binary_data=True)]
    return client.infer(model_name, inputs, outputs=outputs).as_numpy(OUTPUT_IMAGE)


def read_inputs(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An image file -> RGB uint8 (H, W, 3); a mask file -> its luma uint8 (H, W) (a mode "1"/"L" mask as is)."""
    with Image.open(image_path) as image, Image.open(mask_path) as mask:
        rgb = np.asarray(image.convert("RGB"))
        luma = np.asarray(mask if mask.mode in ("1", "L") else mask.convert("L")).astype(np.uint8)
    return rgb, luma


def main(argv: list[str] | None = None) -> int:
    import tritonclient.http as triton_http
    from tritonclient.utils import InferenceServerException

    parser = argparse.ArgumentParser(prog="python -m rethined_engine.deploy.triton_client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path, help="input image (PNG/JPEG/...)")
    parser.add_argument("mask", type=Path, help="mask of the same size; nonzero pixels are filled")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output image (.png: lossless)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the server's HTTP host:port (default {DEFAULT_URL})")
    parser.add_argument("--model", default=TritonRepoConfig.model_name, help="model name (default rethined)")
    args = parser.parse_args(argv)
    image, mask = read_inputs(args.image, args.mask)
    client = triton_http.InferenceServerClient(args.url)
    start = time.perf_counter()
    try:
        result = inpaint_remote(client, image, mask, args.model)
    except InferenceServerException as exc:
        print(f"error: {args.url} refused the request: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    Image.fromarray(result).save(args.output)
    print(f"wrote {args.output}: {image.shape[1]}x{image.shape[0]} inpainted by {args.model} at {args.url} "
          f"in {elapsed:.2f}s (request and response included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
