"""Triton kernels (installed as ``rethined_engine.kernels``); each kernel family lives in its own file
beside its launcher and plain-torch reference. The kernels arrive with the Triton issue; the torch
reference they must match is ``rethined_engine.model``."""
