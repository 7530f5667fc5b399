"""Where `rethined_engine.kernels`, `.bench` and `.csrc` come from: in a source checkout the top-level
kernels/, bench/ and csrc/ folders (setup.py's package_dir), in an installed copy the package's own
subfolders; and an explicitly asked backend that cannot be loaded raises, saying how to get it."""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rethined_engine
from rethined_engine import Engine

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = rethined_engine.SOURCE_SUBPACKAGES
WHERE = ("import json, rethined_engine, rethined_engine.kernels, rethined_engine.bench, rethined_engine.csrc, "
         "rethined_engine.bench.env; m = __import__('sys').modules; "
         "print(json.dumps({n: m['rethined_engine.' + n].__file__ for n in ('kernels', 'bench', 'csrc', 'bench.env')}"
         " | {'package': rethined_engine.__file__}))")


def where(cwd: Path, pythonpath: Path | None = None) -> dict:
    """Files of the subpackages as a fresh interpreter started in `cwd` imports them."""
    import json

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run([sys.executable, "-c", WHERE], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return {name: Path(path) for name, path in json.loads(proc.stdout).items()}


def copy_package(dest: Path) -> None:
    shutil.copytree(ROOT / "rethined_engine", dest,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "weights", "assets", *SUBPACKAGES))


def test_subpackages_are_the_top_level_folders_from_the_repository_root():
    files = where(ROOT)
    assert files["package"] == ROOT / "rethined_engine" / "__init__.py"
    for name in SUBPACKAGES:
        assert files[name] == ROOT / name / "__init__.py"
    assert files["bench.env"] == ROOT / "bench" / "env.py"


def test_checkout_folders_win_over_a_stale_copy_inside_the_package(tmp_path):
    """A clone whose rethined_engine/ holds an old kernels/ (a build or symlink left over) still runs its
    top-level kernels/."""
    clone = tmp_path / "clone"
    copy_package(clone / "rethined_engine")
    for name in SUBPACKAGES:
        shutil.copytree(ROOT / name, clone / name, ignore=shutil.ignore_patterns("__pycache__", "results"))
        stale = clone / "rethined_engine" / name
        stale.mkdir()
        (stale / "__init__.py").write_text("raise ImportError('stale copy imported')\n")
    shutil.copy(ROOT / "setup.py", clone / "setup.py")
    files = where(clone)
    assert files["package"] == clone / "rethined_engine" / "__init__.py"   # the working directory's, not /work/main's
    for name in SUBPACKAGES:
        assert files[name] == clone / name / "__init__.py"


def test_installed_copy_uses_its_own_subpackages(tmp_path):
    """Without setup.py beside the package (site-packages), nothing is mapped: a top-level `kernels`
    package installed by something else is never taken for rethined_engine.kernels."""
    site = tmp_path / "site"
    copy_package(site / "rethined_engine")
    for name in SUBPACKAGES:
        shutil.copytree(ROOT / name, site / "rethined_engine" / name,
                        ignore=shutil.ignore_patterns("__pycache__", "results"))
        (site / name).mkdir()
        (site / name / "__init__.py").write_text("raise ImportError('unrelated top-level package imported')\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    files = where(elsewhere, pythonpath=site)
    assert files["package"] == site / "rethined_engine" / "__init__.py"
    for name in SUBPACKAGES:
        assert files[name] == site / "rethined_engine" / name / "__init__.py"


def test_mapped_names_are_setup_py_package_dir():
    tree = ast.parse((ROOT / "setup.py").read_text())
    (package_dir,) = [ast.literal_eval(kw.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
                      for kw in node.keywords if kw.arg == "package_dir"]
    assert package_dir == {f"rethined_engine.{name}": name for name in SUBPACKAGES}


@pytest.fixture
def without_native(monkeypatch):
    """The process as it is where rethined_engine._native was not built."""
    monkeypatch.delattr(rethined_engine, "_native", raising=False)
    monkeypatch.setitem(sys.modules, "rethined_engine._native", None)


def test_asking_for_native_without_the_extension_raises_how_to_build_it(without_native, weights_path):
    with pytest.raises(ImportError, match=r"pip install -e \..*C\+\+17 compiler with OpenMP") as info:
        Engine(weights=weights_path, backend="native", device="cpu")
    assert str(ROOT / "rethined_engine") in str(info.value)     # where it was looked for


def test_default_backend_falls_back_to_torch_with_a_warning(without_native, weights_path):
    with pytest.warns(RuntimeWarning, match="not built.*pip install -e"):
        engine = Engine(weights=weights_path, device="cpu")
    assert engine.backend == "torch"


def test_asking_for_triton_on_the_cpu_raises(monkeypatch, weights_path):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises((ValueError, ImportError), match="CUDA|pip install"):
        Engine(weights=weights_path, backend="triton", device="cpu")
