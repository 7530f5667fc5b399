"""rethined_engine: real-time high-resolution image inpainting (RETHINED).

`Engine` and `ModelConfig` import without torch (the TensorRT runtime needs only numpy, tensorrt and
pycuda); `Rethined`, the torch reference model, imports torch on first use.
"""
from .config import ModelConfig
from .engine import Engine

__version__ = "0.1.0"
__all__ = ["Engine", "ModelConfig", "Rethined", "__version__"]


def __getattr__(name: str):
    if name == "Rethined":
        from .model import Rethined
        return Rethined
    raise AttributeError(f"module 'rethined_engine' has no attribute {name!r}")
