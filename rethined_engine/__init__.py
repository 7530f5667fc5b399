"""rethined_engine: real-time high-resolution image inpainting (RETHINED)."""
from .config import ModelConfig
from .engine import Engine
from .model import Rethined

__version__ = "0.1.0"
__all__ = ["Engine", "ModelConfig", "Rethined", "__version__"]
