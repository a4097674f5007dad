"""The `fastccfs` command. Every user error ends as one line on stderr and exit code 2 (`--debug`: traceback)."""
from __future__ import annotations

import argparse
import sys

from fastccfs.errors import UserError


def _convert(args) -> None:
    from fastccfs.store import convert

    stores = convert(args.dataset, args.root, args.cache, download=args.download, size=args.size,
                     workers=args.workers, progress=not args.quiet)
    for split, store in stores.items():
        h, w = store.image_size
        print(f"{store.meta['dataset']}/{split}: {len(store)} images {h}×{w}, {store.num_classes} classes → {store.path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastccfs", description="Fast CCFS for high-IPC dataset distillation.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="decode a dataset once into the store that every loader reads")
    p.add_argument("dataset", help="cifar10, cifar100, tiny-imagenet, demo, or a path to an ImageFolder tree/zip or .npz")
    p.add_argument("--root", default=".", help="folder holding the dataset's archive or extracted folder (default: .)")
    p.add_argument("--cache", default=None, help="store folder (default: $FASTCCFS_CACHE or ~/.cache/fastccfs)")
    p.add_argument("--download", action="store_true", help="fetch the official archive into --root if it is missing")
    p.add_argument("--size", type=int, default=None, help="resize every image to SIZE×SIZE (shorter side, centre crop)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        if args.debug:
            raise
        print(f"fastccfs: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastccfs: interrupted", file=sys.stderr)
        return 130
    return 0
