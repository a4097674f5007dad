"""One registry per kind of extension: loader backends, models, coarse rules, fine rules, methods and
datasets. Each entry is registered where it is defined; everything that lists or checks names (the CLI's
choices, the settings' checks, `convert --to`, the help texts, the report) reads the registry.

    import fastccfs

    @fastccfs.register("model", "mlp")
    def mlp(num_classes, image_size):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * image_size ** 2, num_classes))

What an entry of each kind is (the module that defines the built-ins says it in full):
  backend  fastccfs.loaders.Backend          (fastccfs/loaders/__init__.py)
  model    f(num_classes, image_size) → nn.Module            (fastccfs/models.py)
  coarse   fastccfs.selection.CoarseRule     (fastccfs/selection.py)
  fine     f(scores, seed) → sort keys, smaller taken first  (fastccfs/selection.py)
  method   fastccfs.methods.Method           (fastccfs/methods.py)
  dataset  fastccfs.datasets.Dataset         (fastccfs/datasets.py)

A leaf module: it imports nothing of fastccfs but the error type, so any module may register. The
built-ins of a kind are imported the first time the kind is read, which keeps `import fastccfs` (and
the settings) free of torch until a torch-backed kind is needed.
"""
from __future__ import annotations

import importlib

from fastccfs.errors import UserError

# Where each kind's built-ins are defined (and registered).
_BUILTINS = {"backend": "fastccfs.loaders.backends", "model": "fastccfs.models", "coarse": "fastccfs.selection",
             "fine": "fastccfs.selection", "method": "fastccfs.methods", "dataset": "fastccfs.datasets"}
KINDS = tuple(_BUILTINS)
_NOUN = {"backend": "loader backend", "coarse": "coarse rule", "fine": "fine rule"}  # for messages
_ENTRIES: dict[str, dict[str, object]] = {kind: {} for kind in KINDS}
_LOADED: set[str] = set()


def register(kind: str, name: str, entry=None):
    """Register ENTRY as NAME of KIND; without ENTRY, a decorator. A name already taken is refused (an
    accidental shadowing of a built-in would change results silently)."""
    entries = _entries(kind)  # the built-ins first, so that they keep their names and their place

    def add(obj):
        if name in entries and entries[name] is not obj:
            raise UserError(f"a {_NOUN.get(kind, kind)} named {name!r} is already registered: pick another name")
        entries[name] = obj
        return obj

    return add if entry is None else add(entry)


def unregister(kind: str, name: str) -> None:
    """Remove NAME from KIND (a user's own entry; tests)."""
    _check_kind(kind)
    _ENTRIES[kind].pop(name, None)


def names(kind: str) -> tuple[str, ...]:
    """The registered names of KIND, built-ins first, in the order they were registered."""
    return tuple(_entries(kind))


def get(kind: str, name: str):
    """The entry NAME of KIND, or a one-line error listing the known names."""
    entries = _entries(kind)
    if name not in entries:
        raise UserError(f"unknown {_NOUN.get(kind, kind)} {name!r}: use one of {', '.join(entries)}")
    return entries[name]


def _entries(kind: str) -> dict:
    _check_kind(kind)
    if kind not in _LOADED:
        _LOADED.add(kind)
        importlib.import_module(_BUILTINS[kind])
    return _ENTRIES[kind]


def _check_kind(kind: str) -> None:
    if kind not in _ENTRIES:
        raise UserError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
