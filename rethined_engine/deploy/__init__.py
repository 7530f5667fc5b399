"""Deployment without PyTorch: ONNX export of the LR network, TensorRT engine build, CUDA C HR stage."""
