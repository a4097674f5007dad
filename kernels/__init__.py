"""numba kernels for the CPU hot paths: batch augmentation (resample) and per-class top-k (selection).

Each kernel has a plain numpy/torch twin in the fastccfs package that tests compare it against.
"""


def warm_up() -> None:
    """Load (or compile) every kernel once, so that timed code does not pay numba's start-up."""
    import numpy as np

    from kernels.resample import crop_flip_normalize, normalize
    from kernels.topk import topk_per_class

    src = np.zeros((1, 4, 4, 3), np.uint8)
    rows, ones, zeros = np.zeros(1, np.int64), np.ones(3, np.float32), np.zeros(3, np.float32)
    crop_flip_normalize(src, rows, np.array([[0, 0, 4, 4]], np.int64), np.zeros(1, bool), ones, zeros,
                        np.empty((1, 4, 4, 3), np.float32))
    normalize(src, rows, ones, zeros, np.empty((1, 4, 4, 3), np.float32))
    topk_per_class(np.zeros(2, np.int64), np.zeros(2, np.int8), np.zeros(2), np.ones(1, np.int64))
