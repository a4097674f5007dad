"""predict() under torch.distributed (gloo, 2 CPU processes): each rank infers its share and every
rank ends with the whole split in store order, equal to a single-process predict()."""
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastccfs.loaders import make_loader
from fastccfs.models import create_model
from fastccfs.store import Store
from fastccfs.trainer import predict


def _worker(rank, world, init_file, store_path, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = create_model("convnet_bn", 10)
        store = Store.open(store_path)
        loader = make_loader(store, augment=False, batch_size=64, device="cpu", indices=np.arange(301), rank=rank,
                             world_size=world)
        logits, labels, ids = predict(model, loader)
        np.savez(f"{out}_{rank}.npz", logits=logits, labels=labels, ids=ids)
    finally:
        dist.destroy_process_group()


def test_predict_gathers_ranks_into_store_order(demo_stores, tmp_path):
    store = demo_stores["train"]
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(store.path), str(tmp_path / "out")), nprocs=2)
    torch.manual_seed(0)
    model = create_model("convnet_bn", 10)
    whole = predict(model, make_loader(store, augment=False, batch_size=64, device="cpu", indices=np.arange(301)))
    for rank in (0, 1):
        got = np.load(tmp_path / f"out_{rank}.npz")
        np.testing.assert_array_equal(got["ids"], np.arange(301))
        np.testing.assert_array_equal(got["labels"], store.labels[:301])
        np.testing.assert_allclose(got["logits"], whole[0], atol=1e-4)
