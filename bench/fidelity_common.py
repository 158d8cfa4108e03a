"""What the fidelity scripts share: reading the tensors runner wrote, and comparing
tensors relative to their largest magnitude (collecting the failures).

DIR/fidelity.json indexes DIR/fidelity.bin, little-endian f32 tensors written by
tests/common/fidelity.rs: each name's shape and offset, and the check's config.
"""

import json

import numpy as np
import torch


def load(directory):
    """(config, {name: tensor}) from DIR/fidelity.json and DIR/fidelity.bin."""
    with open(f"{directory}/fidelity.json") as f:
        manifest = json.load(f)
    blob = np.fromfile(f"{directory}/fidelity.bin", dtype="<f4")
    tensors = {}
    for name, entry in manifest["tensors"].items():
        size = int(np.prod(entry["shape"])) if entry["shape"] else 1
        values = blob[entry["offset"] : entry["offset"] + size].reshape(entry["shape"])
        tensors[name] = torch.from_numpy(values.copy())
    return manifest["config"], tensors


class Checks:
    """Comparisons of runner's tensors with PyTorch's; `failures` says which failed."""

    def __init__(self):
        self.failures = []

    def compare(self, what, ours, theirs, tolerance):
        """The largest difference relative to the largest value of `theirs`, recorded as a
        failure past `tolerance` (or when the shapes differ)."""
        ours, theirs = ours.detach().double(), theirs.detach().double()
        if ours.shape != theirs.shape:
            self.failures.append(f"{what}: shape {tuple(theirs.shape)} in PyTorch, {tuple(ours.shape)} in runner")
            return 0.0
        scale = max(theirs.abs().max().item(), 1e-12)
        diff = (ours - theirs).abs().max().item() / scale
        if not diff <= tolerance:
            self.failures.append(f"{what}: differs by {diff:.2e} of its largest value (tolerance {tolerance:.0e})")
        return diff
