"""Names and metadata of the exported LR graph, shared by the exporter (torch), the TensorRT builder
and the runtime (no torch)."""
from __future__ import annotations

from pathlib import Path

OPSET = 17
INPUT_NAMES = ("image", "mask", "key_inside")
OUTPUT_NAMES = ("lr_result", "topk_weight", "topk_fine_weight", "topk_index")
METADATA_CONFIG = "rethined_model_config"    # ModelConfig JSON of the weights (hr_topk = the graph's K)
METADATA_DYNAMIC = "rethined_dynamic"        # "1": free batch / LR axes; "0": fixed at rethined_lr_size
METADATA_LR_SIZE = "rethined_lr_size"        # "h,w" of the example (the only size when static)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
