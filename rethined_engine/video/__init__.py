"""Video inpainting: a streaming, temporally consistent inpainter over the image `Engine`."""
from .stream import VideoInpainter

__all__ = ["VideoInpainter"]
