"""Video inpainting: a streaming, temporally consistent inpainter over the image `Engine`."""
from .stream import VideoInpainter
from .files import EncodeSettings, LOSSLESS, VideoSummary, inpaint_video

__all__ = ["VideoInpainter", "EncodeSettings", "LOSSLESS", "VideoSummary", "inpaint_video"]
