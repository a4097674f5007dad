"""numba kernels for the CPU hot paths: batch augmentation (resample) and per-class top-k (selection).

Each kernel has a plain numpy/torch twin in the fastccfs package that tests compare it against.
"""
