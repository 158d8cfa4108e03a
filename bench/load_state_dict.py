"""runner's model.safetensors loads into the PyTorch reference models as it is:
`model.load_state_dict(safetensors.torch.load_file(path))` (strict) for the ResNet of
resnet_fidelity.py and the GPT of transformer_fidelity.py, which then give runner's
evaluation logits on the same input.

Run by tests/named_params_cli.rs: DIR/fidelity.json's config names each case's weights file
(written by runner) and holds its model's shape; DIR/fidelity.bin holds each case's input
and runner's logits.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fidelity_common import Checks, load  # noqa: E402
from resnet_fidelity import Resnet  # noqa: E402
from transformer_fidelity import Gpt  # noqa: E402


def main():
    directory = sys.argv[1]
    config, t = load(directory)
    try:
        from safetensors.torch import load_file
    except ImportError:
        print("the safetensors package is missing: pip install safetensors")
        sys.exit(1)
    torch.set_num_threads(1)
    checks = Checks()
    for case in config["cases"]:
        if case["kind"] == "resnet":
            model = Resnet(case["depth"], case["classes"])
            x = t[f"{case['name']}.x"].reshape(-1, 3, 32, 32)
        else:
            model = Gpt(case)
            x = t[f"{case['name']}.x"].long()
        state = load_file(os.path.join(directory, case["file"]))
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            checks.failures.append(f"{case['name']}: load_state_dict refused the file: {e}")
            continue
        model.eval()
        with torch.no_grad():
            checks.compare(f"{case['name']} logits", t[f"{case['name']}.logits"], model(x), 1e-5)
    if checks.failures:
        print("\n".join(checks.failures))
        sys.exit(1)
    print(f"runner's model.safetensors load into PyTorch and agree ({len(config['cases'])} models)")


if __name__ == "__main__":
    main()
