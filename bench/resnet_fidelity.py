"""ResNet-20 in PyTorch against runner's (tests/resnet_fidelity.rs writes the inputs).

Reads DIR/fidelity.json and DIR/fidelity.bin (little-endian f32 tensors: runner's initial
weights in the order of its `Model::vars`, the batch, and what runner computed), builds
the same network (He et al. 2016's CIFAR ResNet, option A shortcuts, PyTorch's
BatchNorm2d), loads the weights and compares:
  - evaluation-mode logits at the start,
  - training-mode logits, loss and every parameter's gradient, and the running
    statistics after that step,
  - the losses of 50 SGD steps on the batch (momentum, weight decay on convolution and
    linear weights only, as runner's default weight_decay_bn = false), against PyTorch's
    float64 curve: runner may be as far from it as PyTorch's float32 curve, times 10.
Prints each comparison's largest difference relative to the tensor's largest magnitude
and exits 1 when one is past its tolerance (float32 rounding through 20 layers).

Usage: python3 bench/resnet_fidelity.py DIR
"""

import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fidelity_common import Checks, load  # noqa: E402


class ConvBn(nn.Module):
    def __init__(self, c_in, c_out, k, stride):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return self.bn(self.conv(x))


class Block(nn.Module):
    def __init__(self, c_in, planes, stride, shortcut="A"):
        super().__init__()
        self.a = ConvBn(c_in, planes, 3, stride)
        self.b = ConvBn(planes, planes, 3, 1)
        changes = stride != 1 or c_in != planes
        self.pad = (planes - c_in) // 2 if changes and shortcut == "A" else None
        # Option B: a strided 1x1 convolution and batch norm where the shape changes.
        if changes and shortcut == "B":
            self.shortcut = ConvBn(c_in, planes, 1, stride)

    def forward(self, x):
        h = self.b(F.relu(self.a(x)))
        if hasattr(self, "shortcut"):
            skip = self.shortcut(x)
        elif self.pad is not None:
            skip = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        else:
            skip = x
        return F.relu(h + skip)


class Resnet(nn.Module):
    def __init__(self, depth, classes, shortcut="A"):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = ConvBn(3, 16, 3, 1)
        blocks, c_in = [], 16
        for stage, planes in enumerate([16, 32, 64]):
            for i in range(n):
                blocks.append(Block(c_in, planes, 2 if stage > 0 and i == 0 else 1, shortcut))
                c_in = planes
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)

    def layers(self):
        out = [self.stem]
        for b in self.blocks:
            out += [b.a, b.b]
        return out

    def forward(self, x):
        h = self.blocks(F.relu(self.stem(x)))
        return self.fc(h.mean(dim=(2, 3)))



def set_weights(model, t):
    """runner's order: per layer conv weight, bn scale, bn shift; fc weight (in, out), fc
    bias; then per layer running mean and variance."""
    i = 0
    with torch.no_grad():
        for layer in model.layers():
            layer.conv.weight.copy_(t[f"init.{i}"])
            layer.bn.weight.copy_(t[f"init.{i + 1}"])
            layer.bn.bias.copy_(t[f"init.{i + 2}"])
            i += 3
        model.fc.weight.copy_(t[f"init.{i}"].T)
        model.fc.bias.copy_(t[f"init.{i + 1}"])
        i += 2
        for layer in model.layers():
            layer.bn.running_mean.copy_(t[f"init.{i}"])
            layer.bn.running_var.copy_(t[f"init.{i + 1}"])
            i += 2


def parameters_in_runners_order(model):
    out = []
    for layer in model.layers():
        out += [layer.conv.weight, layer.bn.weight, layer.bn.bias]
    return out + [model.fc.weight, model.fc.bias]


def main():
    directory = sys.argv[1]
    config, t = load(directory)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x = t["x"].reshape(-1, 3, 32, 32)
    y = t["y"].long()
    checks = Checks()
    failures, compare = checks.failures, checks.compare

    model = Resnet(config["depth"], config["classes"])
    set_weights(model, t)
    count = sum(p.numel() for p in model.parameters())
    if count != config["parameters"]:
        failures.append(f"parameters: {count} in PyTorch, {config['parameters']} in runner")

    model.eval()
    worst_eval = compare("eval logits", t["eval_logits"], model(x), 1e-5)

    model.train()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    worst_train = compare("train logits", t["train_logits"], logits, 1e-5)
    compare("loss", t["loss"], loss.reshape(1), 1e-6)
    params = parameters_in_runners_order(model)
    worst_grad = 0.0
    for i, p in enumerate(params):
        g = p.grad.T if p is model.fc.weight else p.grad
        worst_grad = max(worst_grad, compare(f"gradient of param.{i}", t[f"grad.{i}"], g, 1e-4))
    worst_stats = 0.0
    i = len(params)
    for layer in model.layers():
        worst_stats = max(worst_stats, compare(f"running mean of param.{i}", t[f"after.{i}"], layer.bn.running_mean, 1e-5))
        worst_stats = max(worst_stats, compare(f"running var of param.{i + 1}", t[f"after.{i + 1}"], layer.bn.running_var, 1e-5))
        i += 2

    # 50 SGD steps from the same start, in float32 and in float64: the float64 curve is
    # the reference, and runner may be as far from it as PyTorch's own float32 curve is
    # (times a margin): rounding, amplified alike by the steps and by ReLU kinks that a
    # value within rounding of 0 lands on either side of.
    def curve(dtype):
        model = Resnet(config["depth"], config["classes"])
        set_weights(model, t)
        model = model.to(dtype)
        model.train()
        decay = [layer.conv.weight for layer in model.layers()] + [model.fc.weight]
        rest = [p for p in model.parameters() if all(p is not d for d in decay)]
        opt = torch.optim.SGD(
            [{"params": decay, "weight_decay": config["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
            lr=config["lr"],
            momentum=config["momentum"],
        )
        out = []
        for _ in range(config["steps"]):
            opt.zero_grad()
            step_loss = F.cross_entropy(model(x.to(dtype)), y)
            out.append(step_loss.item())
            step_loss.backward()
            opt.step()
        return torch.tensor(out, dtype=torch.float64)

    losses, exact = curve(torch.float32), curve(torch.float64)
    ours = t["losses"].double()
    # Relative to each step's loss, and once the batch is learnt relative to a hundredth
    # of the first loss (a difference of 1e-6 in a loss of 1e-4 is rounding).
    scale = torch.maximum(exact.abs(), torch.full_like(exact, 0.01 * exact[0].abs().item()))
    per_step = ((ours - exact).abs() / scale).max().item()
    torch_per_step = ((losses - exact).abs() / scale).max().item()
    if len(sys.argv) > 2:
        for k, (a, b, c) in enumerate(zip(ours.tolist(), losses.tolist(), exact.tolist())):
            print(f"step {k}: runner {a:.7f} pytorch {b:.7f} pytorch float64 {c:.7f}")
    if not per_step <= max(10 * torch_per_step, 1e-4):
        failures.append(
            f"50-step losses: runner is up to {per_step:.2e} from PyTorch's float64 curve, PyTorch's float32 up to "
            f"{torch_per_step:.2e} (tolerance: 10 times that)"
        )

    print(
        f"ResNet-20, {count} parameters, batch of {x.shape[0]}: largest differences relative to each tensor's largest value: "
        f"eval logits {worst_eval:.1e}, train logits {worst_train:.1e}, gradients {worst_grad:.1e}, "
        f"running statistics {worst_stats:.1e}; 50 SGD steps: losses {ours[0].item():.4f} -> {ours[-1].item():.4f} "
        f"(PyTorch {losses[0].item():.4f} -> {losses[-1].item():.4f}); largest relative difference from PyTorch's "
        f"float64 curve: runner {per_step:.1e}, PyTorch float32 {torch_per_step:.1e}"
    )
    if failures:
        print("PyTorch and runner disagree:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("runner and PyTorch agree")


if __name__ == "__main__":
    main()
