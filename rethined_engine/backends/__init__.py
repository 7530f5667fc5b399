"""Inference backends behind `Engine`: "torch" (the reference, any device), "native" (CPU: C++/OpenMP
pre/post-processing around the torch LR network; the CPU default when built), "triton" (CUDA: Triton
HR kernel around the torch LR network; not yet the CUDA default: unmeasured on a GPU) and "tensorrt" (NVIDIA
GPUs and Jetson, no torch needed). Each has `inpaint(img, mask)` with the contract of
`rethined_engine.io`."""
AVAILABLE = ("torch", "native", "triton", "tensorrt")
