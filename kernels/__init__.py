"""numba kernels for the CPU hot paths: batch augmentation (resample) and per-class top-k (selection).

Installed as `fastccfs.kernels` (the folder stays kernels/ at the top of the repository). Each kernel has
a plain numpy/torch twin in the fastccfs package that tests compare it against.
"""


def warm_up() -> float:
    """Load (or compile) every kernel once, so that timed code does not pay numba's start-up; returns
    the seconds it took (compiled kernels are cached on disk: later processes only load them)."""
    import time

    import numpy as np

    from .resample import crop_flip_normalize, normalize, pad_crop_flip_normalize
    from .topk import tiers, topk_per_class

    start = time.perf_counter()
    src = np.zeros((1, 4, 4, 3), np.uint8)
    rows, ones, zeros = np.zeros(1, np.int64), np.ones(3, np.float32), np.zeros(3, np.float32)
    # Both layouts the loaders write: NHWC (channels_last) and a transposed view of NCHW (contiguous).
    for out in (np.empty((1, 4, 4, 3), np.float32), np.empty((1, 3, 4, 4), np.float32).transpose(0, 2, 3, 1)):
        crop_flip_normalize(src, rows, np.array([[0, 0, 4, 4]], np.int64), np.zeros(1, bool), ones, zeros, out)
        normalize(src, rows, ones, zeros, out)
        pad_crop_flip_normalize(src, rows, np.zeros((1, 2), np.int64), np.zeros(1, bool), 4, ones, zeros, out)
    labels = np.zeros(2, np.int64)
    for use_teacher in (False, True):  # the signatures selection.coarse_to_fine calls
        tiers(labels, np.zeros(2, bool), labels, np.zeros(2, bool), use_teacher)
    topk_per_class(labels, np.zeros(2, np.int8), np.zeros(2), np.ones(1, np.int64))
    return time.perf_counter() - start
