"""rethined_engine: real-time high-resolution image inpainting (RETHINED)."""
from setuptools import setup

setup(
    name="rethined_engine",
    version="0.1.0",
    description="Kernel-optimised inference engine for RETHINED high-resolution image inpainting",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["rethined_engine", "rethined_engine.model", "rethined_engine.train", "rethined_engine.backends",
              "rethined_engine.deploy",
              "rethined_engine.kernels", "rethined_engine.bench", "rethined_engine.csrc"],
    package_dir={"rethined_engine.kernels": "kernels", "rethined_engine.bench": "bench",
                 "rethined_engine.csrc": "csrc"},
    package_data={"rethined_engine": ["weights/*.safetensors", "weights/*.md", "assets/*"],
                  "rethined_engine.csrc": ["cuda/*.cu"]},
    install_requires=[
        "torch>=2.4,<3",
        "numpy>=1.24,<3",
        "safetensors>=0.4,<1",
        "pillow>=10,<13",
    ],
    extras_require={
        "triton": ["triton>=3.0; platform_system == 'Linux'"],
        "onnx": ["onnx>=1.15,<2", "onnxruntime>=1.17,<2"],
        "test": ["pytest>=7", "opencv-python-headless>=4.8", "onnx>=1.15,<2", "onnxruntime>=1.17,<2"],
        "bench": ["opencv-python-headless>=4.8"],
    },
    entry_points={"console_scripts": ["rethined=rethined_engine.cli:main"]},
)
