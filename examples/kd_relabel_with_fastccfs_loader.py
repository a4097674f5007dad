"""Evaluate a distilled set the SRe²L/CDA/CCFS way — a student trained from scratch with KD from a
teacher on the same augmented batch — with fastccfs's tensor loader in place of a DataLoader.

    python examples/kd_relabel_with_fastccfs_loader.py cda_cifar10_ipc10/ --dataset cifar10 \\
        --teacher resnet18_cifar10.pth --epochs 300

The only fastccfs-specific lines are the two make_loader calls: the loop below them is the usual one
(`for x, y in loader`), and x arrives normalised, augmented and on the device.
"""
import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fastccfs.distilled import read_distilled
from fastccfs.loaders import make_loader
from fastccfs.models import create_model, load_checkpoint
from fastccfs.store import find_store


def kd_loss(student_logits, teacher_logits, temperature):
    """KL(teacher ‖ student) on temperature-softened distributions, times T² (SRe²L's relabel loss)."""
    s = F.log_softmax(student_logits / temperature, dim=1)
    t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("distilled", help="new000/class000_id000.png … (SRe²L/CDA layout), an ImageFolder or .npz")
    parser.add_argument("--dataset", required=True, help="the converted dataset it distils (for the test split)")
    parser.add_argument("--teacher", required=True, help="teacher checkpoint")
    parser.add_argument("--teacher-model", default="resnet18")
    parser.add_argument("--model", default="resnet18", help="the student")
    parser.add_argument("--ipc", type=int, default=None, help="images per class to use (default: all there are)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--temperature", type=float, default=20.0)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    train_store, test_store = (find_store(args.dataset, split, args.cache) for split in ("train", "test"))
    classes, size = train_store.classes, train_store.image_size[0]
    folders = [p for p in Path(args.distilled).iterdir() if p.is_dir()] if Path(args.distilled).is_dir() else []
    ipc = args.ipc or min((len(list(p.iterdir())) for p in folders), default=None)
    if ipc is None:
        parser.error("--ipc is needed for a distilled set given as a file")
    images, labels = read_distilled(args.distilled, classes, ipc, train_store.images.shape[1:])

    # The swap: two constructors instead of ImageFolder + transforms + DataLoader.
    train = make_loader(train_store, indices=[], extra_images=images, extra_labels=labels,
                        batch_size=args.batch_size, device=device, with_indices=False)
    test = make_loader(test_store, augment=False, batch_size=500, device=device, with_indices=False)

    teacher = load_checkpoint(create_model(args.teacher_model, len(classes), size), args.teacher).to(device).eval()
    student = create_model(args.model, len(classes), size).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs * len(train))
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        student.train()
        for x, y in train:
            with torch.no_grad():
                soft = teacher(x)
            loss = kd_loss(student(x), soft, args.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    student.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in test:
            correct += int((student(x).argmax(1) == y).sum())
            total += len(y)
    print(f"{len(labels)} distilled images, {args.epochs} epochs ({time.perf_counter() - start:.0f} s): "
          f"test accuracy {100 * correct / total:.2f} %")


if __name__ == "__main__":
    main()
