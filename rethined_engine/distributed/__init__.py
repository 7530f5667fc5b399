"""Batch inpainting over files: a manifest pairing images with masks, and `inpaint_dataset`, which runs it in
a local loop or on Ray Data (`pip install 'rethined_engine[ray]'`). docs/scale-out.md."""
from .dataset import inpaint_dataset, inpaint_local, ray_dataset
from .manifest import Manifest, ManifestRow, build_manifest
from .stages import ERROR, OK, SKIPPED, BatchConfig

__all__ = ["ERROR", "OK", "SKIPPED", "BatchConfig", "Manifest", "ManifestRow", "build_manifest", "inpaint_dataset",
           "inpaint_local", "ray_dataset"]
