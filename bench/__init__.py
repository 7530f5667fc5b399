"""Benchmarks (installed as rethined_engine.bench). From the repository root: python -m bench.<name>;
with an installed package, anywhere: python -m rethined_engine.bench.<name>."""
