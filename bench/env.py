"""What a benchmark result records about where it ran: device name, commit, versions, output folder."""
from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

RESULTS = Path("bench/results")  # relative to the working directory: run benchmarks from the repository root
COMMIT_PATTERN = re.compile(r"[0-9a-f]{7,40}")
DIRTY_VALUES = {"0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}
NOT_DIRTY_PATHS = ("bench/results",)   # result files a benchmark itself rewrites: not a change to the code


def device_name(device: str) -> str:
    """GPU name for a CUDA device; CPU model and core count otherwise."""
    if device.startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd)
    except OSError:   # no git program
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def checkout() -> Path | None:
    """The root of the git checkout this file is tracked in (the code that runs), or None for an installed
    copy or a copy of the tree without .git."""
    here = Path(__file__).resolve()
    top = _git(["rev-parse", "--show-toplevel"], here.parent)
    if top is None:
        return None
    root = Path(top)
    relative = here.relative_to(root) if here.is_relative_to(root) else None
    if relative is None or _git(["ls-files", "--error-unmatch", str(relative)], root) is None:
        return None   # e.g. a virtual environment's site-packages inside some repository
    return root


def _env_commit() -> str | None:
    value = os.environ.get("BENCH_COMMIT")
    if not value:
        return None
    if not COMMIT_PATTERN.fullmatch(value):
        raise SystemExit(f"error: BENCH_COMMIT: expected the hash of the commit the copied tree is at "
                         f"(`git rev-parse HEAD` in the checkout it was copied from), got {value!r}")
    return value


def git_commit() -> str | None:
    """$BENCH_COMMIT where set (a copy of the tree on a remote GPU machine may have no .git, or a stale one
    whose HEAD is not the tree's); else the full hash of HEAD of the checkout this code runs from; else None."""
    given = _env_commit()
    if given is not None:
        return given
    root = checkout()
    return None if root is None else _git(["rev-parse", "HEAD"], root)


def git_dirty() -> bool | None:
    """Whether tracked files differ from HEAD (result files under bench/results/ aside) in the checkout this
    code runs from; with $BENCH_COMMIT set or outside a checkout, $BENCH_DIRTY (0 or 1); else None."""
    root = None if os.environ.get("BENCH_COMMIT") else checkout()
    if root is not None:
        excludes = [f":(exclude){path}" for path in NOT_DIRTY_PATHS]
        status = _git(["status", "--porcelain", "--untracked-files=no", "--", ".", *excludes], root)
        return None if status is None else status != ""
    value = os.environ.get("BENCH_DIRTY")
    if value is None:
        return None
    if value.lower() not in DIRTY_VALUES:
        raise SystemExit(f"error: BENCH_DIRTY: expected 1 (the copied tree has uncommitted changes to tracked "
                         f"files) or 0, got {value!r}")
    return DIRTY_VALUES[value.lower()]


def versions() -> dict:
    """Versions of Python and of the libraries a result depends on (None: not installed)."""
    import numpy
    import torch

    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    import rethined_engine
    return {"python": platform.python_version(), "torch": torch.__version__, "triton": triton_version,
            "numpy": numpy.__version__, "rethined_engine": rethined_engine.__version__}


def run_environment(device: str) -> dict:
    """Device, commit (HEAD, with `dirty`), versions and CPU threads of this run, for a result file; exits
    with how to fix it where the commit or the tree's state cannot be known."""
    import torch

    commit, dirty = git_commit(), git_dirty()
    if commit is None:
        raise SystemExit("error: the benchmark's commit is unknown: this code is not in a git checkout. Run it "
                         "from a git clone's root, or, in a copy of a tree without .git, set "
                         "BENCH_COMMIT=<git rev-parse HEAD of the tree copied> and BENCH_DIRTY=1 if it had "
                         "uncommitted changes to tracked files, else BENCH_DIRTY=0")
    if dirty is None:
        raise SystemExit(f"error: BENCH_DIRTY: not set; with BENCH_COMMIT={commit} also set BENCH_DIRTY=1 if the "
                         f"copied tree has uncommitted changes to tracked files, else BENCH_DIRTY=0")
    return {"device": device_name(device), "commit": commit, "dirty": dirty, **versions(),
            "threads": torch.get_num_threads()}
