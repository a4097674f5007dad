"""Models, the trainer's pieces (KD loss, schedule, batch rule, NaN guard), forgetting counts, scores."""
import json
import math

import numpy as np
import pytest
import torch

from conftest import SCORES, need
from fastccfs.errors import UserError
from fastccfs.loaders import make_loader
from fastccfs.models import ConvNet, create_model, load_checkpoint
from fastccfs.scores import ForgettingCounter, load_scores, logit_difficulty
from fastccfs.trainer import Recipe, accuracy, batch_size_for, fit, kd_loss, lr_at


def test_kd_loss_equals_the_direct_formula():
    torch.manual_seed(0)
    s, t, temp = torch.randn(8, 10) * 3, torch.randn(8, 10) * 3, 20.0
    p_t = torch.softmax(t / temp, 1)
    direct = (p_t * (torch.log(p_t) - torch.log_softmax(s / temp, 1))).sum(1).mean() * temp**2
    torch.testing.assert_close(kd_loss(s, t, temp), direct)
    assert kd_loss(t, t, temp).abs() < 1e-6


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    r = Recipe(epochs=15, lr=0.2, warmup_epochs=5, warmup_start=0.01)
    assert lr_at(0, r) == pytest.approx(0.002)
    assert lr_at(1, r) == pytest.approx(0.2 * (0.01 + 0.99 / 5))
    assert lr_at(5, r) == pytest.approx(0.2)
    assert lr_at(10, r) == pytest.approx(0.1)
    assert lr_at(14, r) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 9 / 10)))
    assert all(lr_at(e, r) > lr_at(e + 1, r) for e in range(5, 14))


def test_batch_size_follows_the_set_size():
    # The reference's rule by share of the train split, at each boundary, per dataset: CIFAR-10 (50,000;
    # 500·C and 1000·C images), CIFAR-100 (50,000; 50·C and 100·C), a user dataset of 1,234 images.
    for train, low, high in ((50_000, 5_000, 10_000), (50_000, 5_000, 10_000), (1_234, 124, 247)):
        assert batch_size_for(low - 1, train) == 32 and batch_size_for(low, train) == 64
        assert batch_size_for(high - 1, train) == 64 and batch_size_for(high, train) == 128
    # CIFAR-100 IPC 50 with α 0.1: 500 distilled + phases → 5,000 real images at the end: 64, not 32.
    assert batch_size_for(100 * 50, 50_000) == 64


@pytest.mark.parametrize("name,size", [("resnet18", 32), ("resnet18", 64), ("convnet", 32), ("convnet_bn", 64),
                                       ("resnet50", 32), ("densenet121", 32), ("regnet_y_8gf", 32)])
def test_models_take_small_images(name, size):
    model = create_model(name, 7, size).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 7)
    if name.startswith("resnet"):
        assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
        assert isinstance(model.maxpool, torch.nn.Identity)


def test_convnet_is_three_blocks_of_128_with_instance_norm():
    net = ConvNet(10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert [c.out_channels for c in convs] == [128] * 3 and all(n.num_groups == 128 for n in norms)
    assert net.classifier.in_features == 128 * 4 * 4


@pytest.mark.parametrize("wrap", ["model", "state_dict", "module", "plain"])
def test_checkpoints_in_published_forms_load(tmp_path, wrap):
    src = create_model("resnet18", 10)
    state = src.state_dict()
    if wrap == "module":
        obj = {"model": {"module." + k: v for k, v in state.items()}}
    elif wrap == "plain":
        obj = state
    else:
        obj = {wrap: state}
    torch.save(obj, tmp_path / "ckpt.pth")
    dst = load_checkpoint(create_model("resnet18", 10), tmp_path / "ckpt.pth")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    with pytest.raises(UserError, match=r"does not fit a ResNet for 100 classes: fc.weight is \[10, 512\] in the "
                                        r"checkpoint but \[100, 512\] in the model"):
        load_checkpoint(create_model("resnet18", 100), tmp_path / "ckpt.pth")
    with pytest.raises(UserError, match="does not fit a ConvNet for 10 classes: .* weights missing"):
        load_checkpoint(create_model("convnet_bn", 10), tmp_path / "ckpt.pth")
    with pytest.raises(UserError, match="no such checkpoint"):
        load_checkpoint(src, tmp_path / "missing.pth")
    for obj, kind in ((torch.zeros(3), "Tensor"), ([1, 2], "list")):
        torch.save(obj, tmp_path / "odd.pth")
        with pytest.raises(UserError, match=f"holds a {kind}, not a model's state dict"):
            load_checkpoint(src, tmp_path / "odd.pth")


def test_forgetting_counter_on_hand_made_sequences():
    # Presentations of 4 samples (correct?): s0 1,0,1,0 → 2 events; s1 0,0,0,0 → never learned;
    # s2 1,1,1,1 → 0; s3 0,1,0,1 → 1. A distilled image (id -1) is ignored.
    seq = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 0, 1, 1]])  # rows: epochs; columns: samples
    counter = ForgettingCounter(4)
    labels = torch.zeros(5, dtype=torch.long)
    ids = torch.tensor([2, 0, -1, 3, 1])  # shuffled presentation order
    for row in seq:
        correct = torch.tensor([row[i] if i >= 0 else 1 for i in ids.tolist()], dtype=torch.bool)
        logits = torch.stack([correct.float(), (~correct).float()], 1)  # class 0 wins when correct
        counter.update(logits, labels, ids)
    np.testing.assert_array_equal(counter.scores(epochs=4), [2, 4, 0, 1])


def test_fit_learns_on_real_images_and_guards_against_nan(demo_stores):
    store = demo_stores["train"]
    loader = make_loader(store, batch_size=64, device="cpu", indices=np.arange(0, 3000, 6))
    model = create_model("convnet_bn", 10)
    history = fit(model, loader, Recipe(epochs=4, lr=0.01, warmup_epochs=1), progress=False)
    assert history["loss"][-1] < history["loss"][0] and history["images"] == 4 * 500
    test = make_loader(demo_stores["test"], augment=False, batch_size=600, device="cpu")
    assert accuracy(model, test) > 0.2  # 10 classes: chance is 0.1
    broken = create_model("convnet_bn", 10)
    with torch.no_grad():
        broken.classifier.weight.fill_(float("nan"))
    with pytest.raises(UserError, match="loss became nan in epoch 1"):
        fit(broken, loader, Recipe(epochs=2, lr=0.05), progress=False)


def test_kd_training_moves_the_student_toward_the_teacher(demo_stores):
    store = demo_stores["train"]
    loader = make_loader(store, batch_size=50, device="cpu", indices=np.arange(0, 3000, 10), seed=1)
    teacher = create_model("convnet_bn", 10)
    fit(teacher, loader, Recipe(epochs=3, lr=0.01, warmup_epochs=1), progress=False)
    x, _, _ = next(iter(make_loader(store, augment=False, batch_size=500, device="cpu")))

    def distance(student):
        student.eval()
        with torch.no_grad():
            return float(kd_loss(student(x), teacher.eval()(x), 20.0))

    student = create_model("convnet_bn", 10)
    before = distance(student)
    calls = []  # the teacher's BatchNorms are folded into its convolutions for KD: never run
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in teacher.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    fit(student, loader, Recipe(epochs=4, lr=0.01, warmup_epochs=1), teacher=teacher, progress=False)
    assert hooks and not calls and not teacher.training
    assert distance(student) < 0.5 * before


def test_published_scores_align_with_stores(cifar_stores, demo_stores, tiny_stores):
    forgetting = np.load(need(SCORES / "forgetting_CIFAR10.npy"))
    np.testing.assert_array_equal(load_scores(SCORES / "forgetting_CIFAR10.npy", cifar_stores["train"]), forgetting)
    demo = demo_stores["train"]
    np.testing.assert_array_equal(load_scores(SCORES / "forgetting_CIFAR10.npy", demo),
                                  forgetting[demo.parent_indices])
    cscores = np.load(SCORES / "cscores_CIFAR10.npz")["scores"]
    np.testing.assert_allclose(load_scores(SCORES / "cscores_CIFAR10.npz", cifar_stores["train"]), -cscores)
    tiny = tiny_stores["train"]
    full = np.load(SCORES / "forgetting_Tiny.npy")
    mini = load_scores(SCORES / "forgetting_Tiny.npy", tiny)
    # Class 3's name of rank 2 in string order is <wnid>_10, rank 2 of the full set's order too.
    assert mini[50 * 3 + 2] == full[500 * 3 + 2]
    assert mini[50 * 3 + 3] == full[500 * 3 + sorted(str(i) for i in range(500)).index("11")]
    with pytest.raises(UserError, match="holds 100000 scores but .* has 50000 samples"):
        load_scores(SCORES / "forgetting_Tiny.npy", cifar_stores["train"])


def test_logit_difficulty_negates_the_true_class_logit():
    logits = np.array([[2.0, -1.0], [0.5, 3.0]])
    np.testing.assert_array_equal(logit_difficulty(logits, np.array([0, 0])), [-2.0, -0.5])


@pytest.mark.parametrize("name", ["convnet_bn", "resnet18"])
def test_predict_folds_batchnorm_without_changing_the_logits(demo_stores, name):
    from fastccfs.models import folded
    from fastccfs.trainer import predict

    torch.manual_seed(0)
    model = create_model(name, 10, 32)
    loader = make_loader(demo_stores["train"], batch_size=64, device="cpu", indices=np.arange(128))
    history = fit(model, loader, Recipe(1, 0.01, 0.9, 0.0, 0), device="cpu", amp="off", progress=False)
    assert history["dtype"] == "fp32"  # (non-trivial BN statistics now)
    model.eval()
    fused = folded(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "the model itself is untouched"
    evaluation = make_loader(demo_stores["test"], augment=False, batch_size=100, device="cpu", indices=np.arange(200))
    logits, labels, ids = predict(model, evaluation, "cpu", amp="off")  # fp32: the folding alone is compared
    with torch.no_grad():
        x = torch.cat([x for x, _, _ in evaluation])
        reference = model(x).numpy()
    np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(ids, np.arange(200))


def test_cpu_without_native_bf16_computes_in_fp32_without_measuring(monkeypatch):
    import fastccfs.machine
    from fastccfs import precision

    monkeypatch.setattr(fastccfs.machine, "cpu_flags", lambda: {"avx2", "avx512f", "fma"})
    monkeypatch.setattr(precision, "measure", lambda *a, **k: pytest.fail("measured on a CPU without bf16"))
    model = create_model("convnet_bn", 10, 32)
    assert precision.autocast_dtype(torch.device("cpu"), "auto", model, (32, 3, 32, 32)) is None
    assert precision.autocast_dtype(torch.device("cpu"), "bf16", model, (32, 3, 32, 32)) is torch.bfloat16
    assert precision.autocast_dtype(torch.device("cpu"), "off", model, (32, 3, 32, 32)) is None
    with pytest.raises(UserError, match="unknown amp mode 'fp16'"):
        precision.autocast_dtype(torch.device("cpu"), "fp16", model, (32, 3, 32, 32))


@pytest.mark.parametrize("fp32_s, bf16_s, expected", [(0.10, 0.05, torch.bfloat16), (0.10, 0.095, None)])
def test_cpu_with_native_bf16_uses_it_only_where_measured_faster(monkeypatch, tmp_path, fp32_s, bf16_s, expected):
    """The choice follows the measurement (≥ 1.1× → bf16), is measured once, and is kept on disk so a later
    process on the machine decides the same without measuring."""
    import fastccfs.machine
    from fastccfs import precision

    monkeypatch.setenv("FASTCCFS_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "_decided", {})
    monkeypatch.setattr(fastccfs.machine, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    calls = []
    monkeypatch.setattr(precision, "measure", lambda *a, **k: calls.append(a) or {"fp32_s": fp32_s, "bf16_s": bf16_s})
    model, cpu = create_model("convnet", 10, 32), torch.device("cpu")
    assert precision.autocast_dtype(cpu, "auto", model, (32, 3, 32, 32)) is expected
    assert precision.autocast_dtype(cpu, "auto", model, (32, 3, 32, 32)) is expected
    assert len(calls) == 1
    stored = json.loads((tmp_path / "precision.json").read_text())
    assert [v["dtype"] for v in stored.values()] == ["bf16" if expected else "fp32"]
    monkeypatch.setattr(precision, "_decided", {})  # a new process: the file decides
    assert precision.autocast_dtype(cpu, "auto", model, (32, 3, 32, 32)) is expected and len(calls) == 1
    # another batch shape or an inference pass is another decision
    precision.autocast_dtype(cpu, "auto", model, (64, 3, 32, 32))
    precision.autocast_dtype(cpu, "auto", model, (256, 3, 32, 32), train=False)
    assert len(calls) == 3


def test_measure_times_both_dtypes_without_touching_the_model():
    from fastccfs.precision import measure

    torch.manual_seed(0)
    model = create_model("convnet_bn", 10, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    timings = measure(model, (8, 3, 32, 32), train=True, rounds=1)
    assert set(timings) == {"fp32_s", "bf16_s"} and all(v > 0 for v in timings.values())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
