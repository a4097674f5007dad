"""fastccfs: Curriculum Coarse-to-Fine Selection (CCFS) for high-IPC dataset distillation, at the speed
of the hardware.

The Python API (README, "Python API"):
    fastccfs.run(dataset, ipc, out=None, **settings) -> RunResult   # `fastccfs run`
    fastccfs.select(pred, labels, scores, selected, k, ...)          # one coarse-to-fine step
    fastccfs.convert(dataset, root, cache)                           # decode once into stores
    fastccfs.make_loader(source, ...)                                # the loaders
    fastccfs.set_loader(images, labels, ...)                         # a set in memory (distilled), no store
    fastccfs.load_scores(path, store)                                # published difficulty scores
    fastccfs.DEMO_SCORES                                             # the demo's rows of them
    fastccfs.distill(dataset, ipc, out=None, ...)                    # built-in CDA
    fastccfs.register(kind, name, entry=None)                        # add a backend, model, coarse or fine
                                                                     # rule, method or dataset (fastccfs.registry)

The package root stays import-light (no torch until one of these is used) so that `fastccfs convert`
and the decoding workers start quickly.
"""
__version__ = "0.1.0"

_API = {
    "run": ("fastccfs.api", "run"),
    "RunResult": ("fastccfs.api", "RunResult"),
    "distill": ("fastccfs.api", "distill"),
    "select": ("fastccfs.selection", "coarse_to_fine"),
    "convert": ("fastccfs.store", "convert"),
    "make_loader": ("fastccfs.loaders", "make_loader"),
    "set_loader": ("fastccfs.loaders", "set_loader"),
    "DEMO_SCORES": ("fastccfs.datasets", "DEMO_SCORES"),
    "load_scores": ("fastccfs.scores", "load_scores"),
    "register": ("fastccfs.registry", "register"),
}
__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        import importlib

        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'fastccfs' has no attribute {name!r}")
