"""Video inpainting: a streaming, temporally consistent inpainter over the image `Engine`."""
from .stream import VideoConfig, VideoInpainter
from .files import EncodeSettings, LOSSLESS, VideoSummary, inpaint_video

__all__ = ["VideoConfig", "VideoInpainter", "EncodeSettings", "LOSSLESS", "VideoSummary", "inpaint_video"]
