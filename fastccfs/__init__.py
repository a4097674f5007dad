"""fastccfs: Curriculum Coarse-to-Fine Selection (CCFS) for high-IPC dataset distillation, at the speed
of the hardware.

The package root stays import-light (no torch) so that `fastccfs convert` and the decoding workers
start quickly.
"""
__version__ = "0.1.0"
