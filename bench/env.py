"""What a benchmark result records about where it ran: device name, commit, output folder."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

RESULTS = Path("bench/results")  # relative to the working directory: run benchmarks from the repository root


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


def git_commit() -> str | None:
    """Short commit of the checkout the benchmark runs in (the working directory, else this file's), or
    $BENCH_COMMIT where the copy has no git history (a lent GPU machine gets the tree without .git)."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    for where in (Path.cwd(), Path(__file__).parent):
        proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=where)
        if proc.returncode == 0:
            return proc.stdout.strip()
    return None
