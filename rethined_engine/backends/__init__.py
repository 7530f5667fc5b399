"""Inference backends behind `Engine`: "torch" (the reference, any device) and "tensorrt" (NVIDIA GPUs
and Jetson, no torch needed). Each has `inpaint(img, mask)` with the contract of `rethined_engine.io`."""
AVAILABLE = ("torch", "tensorrt")
PLANNED = ("triton", "native")
