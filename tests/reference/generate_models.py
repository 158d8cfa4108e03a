"""Writes tests/reference/models.json: PyTorch's results for every model kind of
tests/model_reference.rs, from runner's own initial weights and batches.

For each case (an MLP, a CNN, ResNet-20 with option A and B shortcuts, the GPT-style
transformer), runner writes its initial state_dict (PyTorch names and layout), the batch
and the settings (`cargo test --test model_reference -- --ignored dump_inputs`, run by
this script). The same network in PyTorch (bench/resnet_fidelity.py's ResNet,
bench/transformer_fidelity.py's GPT, the stack below) loads them with a strict
load_state_dict and computes, in float64 (the reference) and in float32 (to measure the
spread float32 rounding alone gives):
  - the evaluation outputs of the batch,
  - every trained parameter's gradient at step 0 (its norm and SAMPLES evenly spaced values),
  - the loss before each step of the case's optimizer (SGD with momentum, or AdamW with the
    gradients clipped), weight decay on the parameters runner decays.
The Rust test compares runner against the float64 numbers within 10 times the float32
spread (with a floor) and, for the loss curve, 3 times what Gaussian weight noise of 1e-6
of each tensor's largest value does to PyTorch's float64 curve (see NOISE), on every
`cargo test`, torch or not.

Usage (in a venv with torch and numpy): python tests/reference/generate_models.py
"""

import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from fidelity_common import load  # noqa: E402
from resnet_fidelity import Resnet  # noqa: E402
from transformer_fidelity import Gpt  # noqa: E402

# Relative size of the weight noise whose effect on the loss curve bounds runner's.
NOISE = 1e-6

ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu, "silu": F.silu}


class Stack(nn.Module):
    """runner's mlp, linear and cnn kinds: "same"-padded convolutions, each followed by the
    activation and a 2x2 max-pool, then dense layers with the activation between them."""

    def __init__(self, spec, features, outputs, image):
        super().__init__()
        self.act = ACTIVATIONS[spec.get("activation", "relu")]
        self.image = image
        self.pool = spec.get("pool", False)
        convs, width = [], features
        if spec["kind"] == "cnn":
            c, h, w = image
            k = spec["kernel_size"]
            for out in spec["channels"]:
                convs.append(nn.Conv2d(c, out, k, padding=k // 2))
                c, h, w = out, h + 2 * (k // 2) + 1 - k, w + 2 * (k // 2) + 1 - k
                if self.pool:
                    h, w = h // 2, w // 2
            width = c * h * w
        self.convs = nn.ModuleList(convs)
        dense = []
        for out in spec.get("hidden", []) + [outputs]:
            dense.append(nn.Linear(width, out))
            width = out
        self.dense = nn.ModuleList(dense)

    def forward(self, x):
        if len(self.convs) > 0:
            x = x.reshape(-1, *self.image)
            for conv in self.convs:
                x = self.act(conv(x))
                if self.pool:
                    x = F.max_pool2d(x, 2)
            x = x.flatten(1)
        for i, d in enumerate(self.dense):
            x = d(x)
            if i < len(self.dense) - 1:
                x = self.act(x)
        return x


def model_of(c):
    spec = c["spec"]
    if spec["kind"] in ("mlp", "linear", "cnn"):
        return Stack(spec, c["features"], c["outputs"], c["image"])
    if spec["kind"] == "resnet":
        return Resnet(spec["depth"], c["outputs"], spec["shortcut"])
    if spec["kind"] == "transformer":
        return Gpt({**spec, "context": spec.get("context") or c["features"], "vocab": c["outputs"]})
    raise SystemExit(f"no PyTorch model for kind {spec['kind']}")


def sample(t, k):
    v = t.detach().flatten().double()
    n = v.numel()
    k = min(k, n)
    return {"norm": v.norm().item(), "samples": [v[i * n // k].item() for i in range(k)]}


def run(c, t, name, dtype, noise=0.0, seed=0):
    """(outputs, {parameter: step-0 gradient}, [loss before each step]) in `dtype`, from
    runner's weights plus Gaussian noise of `noise` times each tensor's largest magnitude."""
    model = model_of(c)
    state = {k[len(name) + 6 :]: v for k, v in t.items() if k.startswith(f"{name}.init.")}
    model.load_state_dict(state, strict=True)
    model = model.to(dtype)
    if noise > 0.0:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=generator, dtype=dtype) * p.abs().max() * noise)
    x, y = t[f"{name}.x"], t[f"{name}.y"].long()
    if c["spec"]["kind"] == "transformer":
        x = x.long()
    elif c["spec"]["kind"] == "resnet":
        x = x.to(dtype).reshape(-1, *c["image"])
    else:
        x = x.to(dtype)
    model.eval()
    with torch.no_grad():
        outputs = model(x)
    model.train()
    params = dict(model.named_parameters())
    decay = [params[n] for n in c["decay"]]
    rest = [p for n, p in params.items() if n not in c["decay"]]
    o = c["optimizer"]
    groups_of = lambda wd: [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]  # noqa: E731
    if o["kind"] == "sgd":
        opt = torch.optim.SGD(
            groups_of(o["weight_decay"]), lr=c["lr"], momentum=o["momentum"], dampening=o["dampening"], nesterov=o["nesterov"]
        )
    elif o["kind"] == "adamw":
        opt = torch.optim.AdamW(groups_of(o["weight_decay"]), lr=c["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])
    else:
        raise SystemExit(f"no PyTorch optimizer for {o['kind']}")
    grads, losses = {}, []
    for step in range(c["steps"]):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        losses.append(loss.item())
        loss.backward()
        if step == 0:
            grads = {n: p.grad.detach().clone() for n, p in params.items()}
        if c["clip"] is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), c["clip"])
        opt.step()
    return outputs, grads, losses


def spread(a, b):
    """The largest difference of two tensors relative to the largest magnitude of `b`."""
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def main():
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "MODEL_REFERENCE_DUMP": directory}
        subprocess.run(
            ["cargo", "test", "--test", "model_reference", "--", "--ignored", "--exact", "dump_inputs"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        config, t = load(directory)
    cases = {}
    for name, c in config["cases"].items():
        out64, grads64, losses64 = run(c, t, name, torch.float64)
        out32, grads32, losses32 = run(c, t, name, torch.float32)
        # How far the curve moves when the weights move by rounding-sized amounts: a ResNet
        # on a batch of 8 is ill-conditioned (ReLU kinks a value within rounding of 0 lands
        # on either side of), so from its third step any float32 implementation strays
        # from the float64 curve by far more than PyTorch's float32 (same summation order)
        # shows; runner may stray as far as 1e-6 weight noise makes PyTorch's float64 stray.
        noisy = [run(c, t, name, torch.float64, noise=NOISE, seed=s)[2] for s in range(1, 4)]
        k = c["samples"]
        cases[name] = {
            "config": c,
            "outputs": sample(out64, k),
            "grads": {n: sample(g, k) for n, g in grads64.items()},
            "losses": losses64,
            "float32_spread": {
                "outputs": spread(out32, out64),
                "grads": max(spread(grads32[n], g) for n, g in grads64.items()),
                "losses": [abs(a - b) for a, b in zip(losses32, losses64)],
            },
            "noise_spread": {
                "weights": NOISE,
                "losses": [max(abs(n[i] - b) for n in noisy) for i, b in enumerate(losses64)],
            },
        }
        print(f"{name}: loss {losses64[0]:.4f} -> {losses64[-1]:.4f} over {c['steps']} steps", file=sys.stderr)
    reference = {
        "generated_by": "tests/reference/generate_models.py",
        "torch": torch.__version__,
        "cases": cases,
    }
    path = os.path.join(ROOT, "tests", "reference", "models.json")
    with open(path, "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
