"""rethined_engine: real-time high-resolution image inpainting (RETHINED).

`Engine` and `ModelConfig` import without torch (the TensorRT runtime needs only numpy, tensorrt and
pycuda); `Rethined`, the torch reference model, imports torch on first use.

`rethined_engine.kernels`, `.bench` and `.csrc` live in the top-level kernels/, bench/ and csrc/ folders
of the repository; setup.py's package_dir moves them into the package when it is installed. When this
package is imported from a source checkout (setup.py beside this folder: the repository root is the
working directory, or an editable install), those three names are mapped to the checkout's folders, so
the checkout's code runs, never an installed copy or a stale one inside this folder.
"""
import importlib.util
import os
import sys

SOURCE_SUBPACKAGES = ("kernels", "bench", "csrc")   # setup.py's package_dir: rethined_engine.<name> -> <name>/


class _SourceSubpackageFinder:
    """Meta-path finder for a source checkout: `rethined_engine.<name>` -> `<root>/<name>/` for the
    package_dir folders; every other name is left to the other finders."""

    marks_source_checkout = True   # found again after importlib.reload (a new class object)

    def __init__(self, folders: dict):
        self.folders = folders

    def find_spec(self, fullname, path=None, target=None):
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, os.path.join(folder, "__init__.py"),
                                                      submodule_search_locations=[folder])


def _source_root():
    """The repository root when this package is imported from a source checkout, else None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return root if os.path.isfile(os.path.join(root, "setup.py")) else None


def _map_source_subpackages() -> None:
    root = _source_root()
    if root is None:
        return
    folders = {f"{__name__}.{name}": os.path.join(root, name) for name in SOURCE_SUBPACKAGES
               if os.path.isfile(os.path.join(root, name, "__init__.py"))}
    if folders and not any(getattr(f, "marks_source_checkout", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceSubpackageFinder(folders))   # ahead of the path and editable finders


_map_source_subpackages()

from .config import ModelConfig  # noqa: E402
from .engine import Engine  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Engine", "ModelConfig", "Rethined", "__version__"]


def __getattr__(name: str):
    if name == "Rethined":
        from .model import Rethined
        return Rethined
    raise AttributeError(f"module 'rethined_engine' has no attribute {name!r}")
