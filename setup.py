"""rethined_engine: real-time high-resolution image inpainting (RETHINED).

Developer set-up, from the repository root (editable: the code runs from this checkout, the native
extension is built in place, next to rethined_engine/__init__.py):

    python3 -m venv .venv && .venv/bin/pip install -e '.[test,bench]'

kernels/, bench/ and csrc/ are installed as rethined_engine.kernels, .bench and .csrc (package_dir); in a
source checkout rethined_engine/__init__.py maps those names to the same folders.

The optional native CPU extension (`rethined_engine._native`, csrc/native/, pybind11 + OpenMP) needs a
C++17 compiler; when it cannot be built the install goes on without it (the default backend is then
torch, with a warning; `Engine(backend="native")` raises). RETHINED_NATIVE_REQUIRED=1 makes a failed
build fail the install. RETHINED_NATIVE_MARCH=0 leaves out -march=native (for binaries copied to other CPUs).
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

try:
    from pybind11.setup_helpers import ParallelCompile, Pybind11Extension
except ImportError:  # pybind11 is a build requirement (pyproject.toml); without it: no extension
    Pybind11Extension = None
else:    # the four translation units compile side by side, one per core (RETHINED_BUILD_JOBS=N sets how many)
    ParallelCompile("RETHINED_BUILD_JOBS", default=0).install()


NATIVE_REQUIRED = os.environ.get("RETHINED_NATIVE_REQUIRED", "0") not in ("", "0")


def native_not_built(exc: Exception) -> None:
    if NATIVE_REQUIRED:
        raise RuntimeError(f"RETHINED_NATIVE_REQUIRED is set and rethined_engine._native could not be built: {exc}; "
                           "install a C++17 compiler with OpenMP (e.g. g++), or unset RETHINED_NATIVE_REQUIRED "
                           "to install without the native backend") from exc
    print(f"WARNING: rethined_engine._native not built ({exc}); Engine() will use the torch backend on the CPU "
          "and Engine(backend='native') will raise. Install a C++17 compiler with OpenMP and reinstall.",
          file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Build the native extension if possible; a failure is a warning, not a failed install, unless
    RETHINED_NATIVE_REQUIRED=1."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing, OpenMP missing, ...
            native_not_built(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            native_not_built(exc)


def native_extensions():
    if Pybind11Extension is None:
        native_not_built(ImportError("pybind11 is not installed (a build requirement in pyproject.toml)"))
        return []
    flags = ["-O3", "-fopenmp"] + (["-march=native"] if os.environ.get("RETHINED_NATIVE_MARCH", "1") != "0" else [])
    return [Pybind11Extension("rethined_engine._native", ["csrc/native/rethined_native.cpp", "csrc/native/lr_copy.cpp",
                                                         "csrc/native/source_sweep.cpp", "csrc/native/cnn_ops.cpp"],
                              depends=["csrc/native/copy_rules.h", "csrc/native/lr_copy.h",
                                       "csrc/native/source_sweep.h", "csrc/native/cnn_ops.h",
                                       "csrc/native/bilinear.h"], cxx_std=17,
                              extra_compile_args=flags, extra_link_args=["-fopenmp"])]


setup(
    name="rethined_engine",
    version="0.1.0",
    description="Kernel-optimised inference engine for RETHINED high-resolution image inpainting",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["rethined_engine", "rethined_engine.model", "rethined_engine.train", "rethined_engine.backends",
              "rethined_engine.deploy", "rethined_engine.video", "rethined_engine.distributed",
              "rethined_engine.integrations", "rethined_engine.integrations.comfyui",
              "rethined_engine.kernels", "rethined_engine.bench", "rethined_engine.csrc"],
    package_dir={"rethined_engine.kernels": "kernels", "rethined_engine.bench": "bench",
                 "rethined_engine.csrc": "csrc"},
    package_data={"rethined_engine": ["weights/*.safetensors", "weights/*.md", "assets/*"],
                  "rethined_engine.csrc": ["cuda/*.cu"]},
    ext_modules=native_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    install_requires=[
        "torch>=2.4,<3",
        "numpy>=1.24,<3",
        "safetensors>=0.4,<1",
        "pillow>=10,<14",   # the test suite passes on 12.3 and 13.0
    ],
    extras_require={
        "triton": ["triton>=3.0; platform_system == 'Linux'"],
        "onnx": ["onnx>=1.15,<2", "onnxruntime>=1.17,<2"],
        "video": ["av>=18,<19", "opencv-python-headless>=4.8"],    # PyAV wheels bundle FFmpeg; OpenCV: DIS flow of the temporal mode
        "ray": ["ray[data]>=2.60,<3"],   # rethined batch --ray; tested with 2.60.0
        "test": ["pytest>=7", "pytest-xdist>=3.5", "opencv-python-headless>=4.8", "onnx>=1.15,<2", "onnxruntime>=1.17,<2",
                 "triton>=3.0; platform_system == 'Linux'",    # kernel tests run in the Triton interpreter
                 "pypatchmatch>=2.2,<3; python_version >= '3.11'", "scikit-image>=0.22,<1", "av>=18,<19",
                 "imageio-ffmpeg>=0.5,<1",    # an ffmpeg binary for the raw-pipe test
                 "ray[data]>=2.60,<3"],       # tests/test_distributed.py: one local Ray, 2 CPUs
        "bench": ["opencv-python-headless>=4.8", "pypatchmatch>=2.2,<3; python_version >= '3.11'",
                  "scikit-image>=0.22,<1"],
    },
    entry_points={"console_scripts": ["rethined=rethined_engine.cli:main"]},
)
