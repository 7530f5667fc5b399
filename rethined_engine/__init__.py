"""rethined_engine: real-time high-resolution image inpainting (RETHINED)."""
from .config import ModelConfig
from .model import Rethined

__version__ = "0.1.0"
__all__ = ["ModelConfig", "Rethined", "__version__"]
