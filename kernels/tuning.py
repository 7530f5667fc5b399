"""Autotuning shared by the kernels: named configs are timed on a GPU; the interpreter (CPU tests) has
nothing to time and takes the first config."""
from __future__ import annotations

import os

import triton

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def autotune(configs: dict[str, triton.Config], key: list[str]):
    """triton.autotune over the named `configs` (first = default), keyed on the constexprs in `key`."""
    chosen = list(configs.values())
    return triton.autotune(configs=chosen[:1] if INTERPRET else chosen, key=key)
