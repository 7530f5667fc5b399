"""The CPU backends' malloc settings (cpu_memory.py): applied on Linux/glibc, skipped on request."""
import platform
import sys

import pytest

from rethined_engine import Engine, cpu_memory


def test_opt_out_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv(cpu_memory.OPT_OUT_ENV, "0")
    assert cpu_memory._apply() is False


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_applied_on_glibc(monkeypatch):
    monkeypatch.delenv(cpu_memory.OPT_OUT_ENV, raising=False)
    assert cpu_memory._apply() is True


def test_cpu_engine_applies_it_once(monkeypatch, weights_path):
    calls = []
    monkeypatch.setattr(cpu_memory, "_state", {})
    monkeypatch.setattr(cpu_memory, "_apply", lambda: calls.append(1) or True)
    Engine(weights_path, device="cpu", backend="torch")
    Engine(weights_path, device="cpu", backend="torch")
    assert calls == [1]
