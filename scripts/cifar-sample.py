#!/usr/bin/env python3
"""Writes CIFAR-format sample files of random images, to try the CIFAR configs (and a
sweep over them) before downloading the real data sets (about 160 MB each).

NOT CIFAR: the pixels are noise and the labels random, so a model learns nothing beyond
chance (10% accuracy for CIFAR-10, 1% for CIFAR-100). Only the format is CIFAR's binary
version: CIFAR-10 as data_batch_1.bin ... data_batch_5.bin and test_batch.bin, records of a
label byte and 3x32x32 pixel bytes; CIFAR-100 (--cifar100) as train.bin and test.bin,
records of a coarse and a fine label byte then the pixels. A SAMPLE.txt beside them says
what they are. Python's standard library only; the same seed writes the same files.

Usage: python3 scripts/cifar-sample.py [DIR] [--images N] [--test-images M] [--cifar100]
DIR defaults to data/cifar, where the example configs look (paths in a config are relative
to the config file: configs/ reads ../data/cifar). N training images (default 5,000; the
real sets have 50,000), M test images (default 1,000; the real sets have 10,000). Files
already in DIR are never overwritten unless --force (they may be the real data sets).
"""

import argparse
import os
import random
import sys

PIXELS = 3 * 32 * 32


def records(rng, n, labels):
    """`n` records: for each, one byte per entry of `labels` (each below it), then pixels."""
    out = bytearray()
    for _ in range(n):
        out += bytes(rng.randrange(k) for k in labels)
        out += rng.randbytes(PIXELS)
    return bytes(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", default="data/cifar")
    parser.add_argument("--images", type=int, default=5000, help="training images (default 5000)")
    parser.add_argument("--test-images", type=int, default=1000, help="test images (default 1000)")
    parser.add_argument("--cifar100", action="store_true", help="CIFAR-100's files (20 coarse, 100 fine labels)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="overwrite files already in DIR")
    args = parser.parse_args()
    if args.images < 5 or args.test_images < 1:
        sys.exit("error: --images must be at least 5 (five training files) and --test-images at least 1")
    rng = random.Random(args.seed)
    if args.cifar100:
        labels = (20, 100)
        files = [("train.bin", args.images), ("test.bin", args.test_images)]
    else:
        labels = (10,)
        per = [args.images // 5 + (1 if i < args.images % 5 else 0) for i in range(5)]
        files = [(f"data_batch_{i + 1}.bin", n) for i, n in enumerate(per)] + [("test_batch.bin", args.test_images)]
    there = [name for name, _ in files if os.path.exists(os.path.join(args.dir, name))]
    if there and not args.force:
        sys.exit(
            f"error: {args.dir} already holds {', '.join(there)} (perhaps the real data set); "
            "give another DIR, or --force to overwrite them"
        )
    os.makedirs(args.dir, exist_ok=True)
    for name, n in files:
        with open(os.path.join(args.dir, name), "wb") as f:
            f.write(records(rng, n, labels))
    with open(os.path.join(args.dir, "SAMPLE.txt"), "w") as f:
        f.write(
            f"Random images in CIFAR-{'100' if args.cifar100 else '10'}'s binary format, written by "
            f"scripts/cifar-sample.py (seed {args.seed}): not CIFAR. A model trained on them learns "
            "nothing beyond chance. Replace them with the real data set (see the README, CIFAR-10 "
            "and CIFAR-100).\n"
        )
    total = sum(n for _, n in files)
    print(
        f"wrote {total} random images ({args.images} training, {args.test_images} test) in CIFAR-"
        f"{'100' if args.cifar100 else '10'}'s format to {args.dir}: not CIFAR, for trying the configs",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
