"""Difficulty scores aligned to a store: forgetting events counted while a model trains, and loading
published scores (forgetting .npy, c-score .npz). Higher = harder everywhere in fastccfs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fastccfs.errors import UserError


class ForgettingCounter:
    """Forgetting events (Toneva et al., 2019), counted on the training batches as they are seen.

    An event is a sample going from correctly to incorrectly classified between two consecutive
    presentations. A sample never classified correctly gets the number of epochs (it is harder than
    any sample that was learned and forgotten at most every other epoch). All state lives on the
    device; an update is three vectorised ops, no Python per sample. Ids < 0 (distilled images) are
    ignored.
    """

    def __init__(self, num_samples: int, device="cpu"):
        self.last_correct = torch.zeros(num_samples, dtype=torch.bool, device=device)
        self.learned = torch.zeros(num_samples, dtype=torch.bool, device=device)
        self.events = torch.zeros(num_samples, dtype=torch.int32, device=device)

    def update(self, logits: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> None:
        keep = ids >= 0
        ids = ids[keep]
        correct = logits[keep].argmax(1) == labels[keep]
        self.events[ids] += (self.last_correct[ids] & ~correct).int()
        self.last_correct[ids] = correct
        self.learned[ids] |= correct

    def scores(self, epochs: int) -> np.ndarray:
        events = self.events.float()
        events[~self.learned] = float(epochs)
        return events.cpu().numpy().astype(np.float32)


def score_kind(path: str | os.PathLike) -> str:
    """What a score file holds, told by its content: "forgetting" or "cscore".

    .npy: forgetting scores as published. .npz: its 'kind' entry when it has one (fastccfs writes it),
    else 'labels' + 'scores' is the published c-score layout and 'scores' alone fastccfs's forgetting.npz.
    """
    path = Path(path)
    try:
        data = np.load(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such score file") from None
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npy/.npz score file ({e})") from e
    if not isinstance(data, np.lib.npyio.NpzFile):
        return "forgetting"
    with data:
        if "kind" in data.files:
            kind = str(data["kind"])
            if kind not in ("forgetting", "cscore"):
                raise UserError(f"{path}: unknown score kind {kind!r}")
            return kind
        if "scores" not in data.files:
            raise UserError(f"{path}: a score .npz needs a 'scores' array (it has {', '.join(data.files)})")
        return "cscore" if "labels" in data.files else "forgetting"


def load_scores(path: str | os.PathLike, store) -> np.ndarray:
    """Difficulties (float64, higher = harder) for every sample of a train store.

    Forgetting scores (published .npy, fastccfs's forgetting.npz) as they are; c-scores (higher =
    easier; the published .npz) negated (score_kind tells which). Scores for the full published
    dataset also fit a subset store that knows its samples' indices in it (meta 'parent': the bundled
    demo, the Tiny-ImageNet mini zip).
    """
    path = Path(path)
    kind = score_kind(path)
    try:
        if path.suffix == ".npz" or kind == "cscore":
            with np.load(path) as data:
                raw = data["scores"]
        else:
            raw = np.load(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such score file") from None
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npy/.npz score file ({e})") from e
    if raw.dtype.kind not in "iuf":  # bool, complex, strings, objects: not a difficulty
        raise UserError(f"{path}: scores must be real numbers (integers or floats), got {raw.dtype} values")
    scores = -np.asarray(raw, np.float64) if kind == "cscore" else np.asarray(raw, np.float64)
    if scores.ndim != 1:
        raise UserError(f"{path}: scores must be one number per sample, got shape {scores.shape}")
    if len(scores) != len(store):
        parent = store.meta.get("parent")
        if parent and len(scores) == parent["size"]:
            scores = scores[store.parent_indices]
        else:
            fits = f" or the {parent['size']} of {parent['dataset']}" if parent else ""
            raise UserError(f"{path} holds {len(scores)} scores but {store.path} has {len(store)} samples{fits}: "
                            "use the scores of this dataset")
    if not np.isfinite(scores).all():
        raise UserError(f"{path}: scores contain NaN or infinite values")
    return scores


def logit_difficulty(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The `logits` score: the negated true-class logit (a confident correct sample is easy)."""
    return -logits[np.arange(len(labels)), labels].astype(np.float64)
