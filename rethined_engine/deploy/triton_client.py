"""Inpaint an image through a Triton Inference Server that serves a `rethined export triton-repo` repository.

    python -m rethined_engine.deploy.triton_client IMAGE MASK -o OUT.png [--exclude FILE] [--protocol http|grpc]
        [--url HOST:PORT] [--model rethined]

Needs `tritonclient[http]` (or `[grpc]`). The image is sent as RGB uint8 (H, W, 3), the mask as its luma
uint8 (H, W) (nonzero = fill, as `rethined inpaint` reads it), an exclusion the same way (nonzero = never
copied); the answer is the bytes `Engine().inpaint` returns on the server (the ensemble's: `DeployedPipeline`'s).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .triton_repo import INPUT_EXCLUDE, INPUT_IMAGE, INPUT_MASK, OUTPUT_IMAGE, TritonRepoConfig

DEFAULT_URLS = {"http": "127.0.0.1:8000", "grpc": "127.0.0.1:8001"}   # tritonserver's default ports
TRITON_UINT8 = "UINT8"


def inpaint_remote(client, image: np.ndarray, mask: np.ndarray, model_name: str = TritonRepoConfig.model_name,
                   exclude: np.ndarray | None = None) -> np.ndarray:
    """One request to `model_name` on `client` (a `tritonclient.http` or `tritonclient.grpc`
    InferenceServerClient; HTTP sends binary tensors).

    image: uint8 (H, W, 3) RGB; mask: uint8 (H, W), nonzero = fill; exclude: None, or uint8 (H, W), nonzero =
    never copied (sent as the optional EXCLUDE input). Returns uint8 (H, W, 3). A request the
    server refuses raises `tritonclient.utils.InferenceServerException` with the Engine's message (HTTP 400,
    gRPC INVALID_ARGUMENT).
    """
    protocol = importlib.import_module(".".join(type(client).__module__.split(".")[:2]))   # tritonclient.http/.grpc
    inputs = []
    named = [(INPUT_IMAGE, image), (INPUT_MASK, mask)] + ([] if exclude is None else [(INPUT_EXCLUDE, exclude)])
    for name, array in named:
        tensor = protocol.InferInput(name, list(array.shape), TRITON_UINT8)
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        inputs.append(tensor)
    outputs = [protocol.InferRequestedOutput(OUTPUT_IMAGE)]
    return client.infer(model_name, inputs, outputs=outputs).as_numpy(OUTPUT_IMAGE)


def read_image(image_path: Path) -> np.ndarray:
    """An image file -> RGB uint8 (H, W, 3)."""
    with Image.open(image_path) as image:
        return np.asarray(image.convert("RGB"))


def read_luma(mask_path: Path) -> np.ndarray:
    """A mask file -> its luma uint8 (H, W) (a mode "1"/"L" mask as is)."""
    with Image.open(mask_path) as mask:
        return np.asarray(mask if mask.mode in ("1", "L") else mask.convert("L")).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    from tritonclient.utils import InferenceServerException

    parser = argparse.ArgumentParser(prog="python -m rethined_engine.deploy.triton_client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path, help="input image (PNG/JPEG/...)")
    parser.add_argument("mask", type=Path, help="mask of the same size; nonzero pixels are filled")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output image (.png: lossless)")
    parser.add_argument("--exclude", type=Path, default=None, help="mask of the same size: nonzero pixels are "
                        "never copied into the hole")
    parser.add_argument("--protocol", choices=sorted(DEFAULT_URLS), default="http", help="http (default) or grpc")
    parser.add_argument("--url", default=None, help="the server's host:port (default "
                        f"{DEFAULT_URLS['http']} for http, {DEFAULT_URLS['grpc']} for grpc)")
    parser.add_argument("--model", default=TritonRepoConfig.model_name, help="model name (default rethined)")
    args = parser.parse_args(argv)
    url = args.url or DEFAULT_URLS[args.protocol]
    image, mask = read_image(args.image), read_luma(args.mask)
    exclude = None if args.exclude is None else read_luma(args.exclude)
    client = importlib.import_module(f"tritonclient.{args.protocol}").InferenceServerClient(url)
    start = time.perf_counter()
    try:
        result = inpaint_remote(client, image, mask, args.model, exclude)
    except InferenceServerException as exc:
        print(f"error: {url} refused the request: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    elapsed = time.perf_counter() - start
    Image.fromarray(result).save(args.output)
    print(f"wrote {args.output}: {image.shape[1]}x{image.shape[0]} inpainted by {args.model} at {url} "
          f"({args.protocol}) in {elapsed:.2f}s (request and response included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
