"""The RETHINED model in plain torch (the reference implementation)."""
from .rethined import LROutput, Rethined

__all__ = ["LROutput", "Rethined"]
