"""Benchmarks of ESP Mail on the embedded local stack, side by side with ESP's own dbmail algorithm.

``python -m bench.run --recipients N`` (``make bench``); see ``bench/README.md``.
"""
