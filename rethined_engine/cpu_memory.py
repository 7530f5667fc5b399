"""glibc malloc settings for the CPU backends.

By default glibc serves each allocation of 32 MiB or more (at first: 128 KiB or more) with its own mmap
and unmaps it on free, and it returns freed memory at the top of the heap to the kernel. An inference
call allocates the same large temporaries every time (the LR network's 16-37 MB activations at 512²,
HR-sized buffers), so every call page-faults all of them in afresh: about a fifth of a 2048² call on the
native backend. `retain_freed_memory` raises the mmap threshold to glibc's maximum (32 MiB) and the trim
threshold to TRIM_THRESHOLD_BYTES, so that freed memory is reused by the next call instead. The process
then keeps up to its peak heap; set RETHINED_MALLOC_TUNING=0 before the first Engine to leave malloc alone.
The settings are process-wide (mallopt); other allocators (jemalloc, tcmalloc via LD_PRELOAD) ignore them.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys

OPT_OUT_ENV = "RETHINED_MALLOC_TUNING"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 32 << 20               # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit glibc
TRIM_THRESHOLD_BYTES = 1 << 30                # free memory at the heap's top beyond this still goes back

_state: dict[str, bool] = {}


def retain_freed_memory() -> bool:
    """Apply the settings once per process (Linux with glibc, unless RETHINED_MALLOC_TUNING=0); True when
    they are in effect."""
    if "applied" not in _state:
        _state["applied"] = _apply()
    return _state["applied"]


def _apply() -> bool:
    if os.environ.get(OPT_OUT_ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
