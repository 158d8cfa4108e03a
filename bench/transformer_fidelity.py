"""runner's transformer language model against the same model in PyTorch
(tests/transformer_fidelity.rs writes the inputs).

Reads DIR/fidelity.json and DIR/fidelity.bin (little-endian f32 tensors: runner's initial
weights in the order of its `Model::vars`, a batch of token windows and their targets,
what runner computed on it, and the batches and losses of a short AdamW training), builds
the same GPT (nanoGPT's layout: token and learned position embeddings, pre-layer-norm
blocks of causal self-attention and a 4x GELU MLP, final layer norm, output tied to the
token embedding), loads the weights and compares:
  - the logits and the loss on the batch, and every parameter's gradient,
  - the losses of the training steps (AdamW, betas, eps, weight decay on the linear
    layers' matrices only), against PyTorch's float64 curve: runner may be as far from it
    as PyTorch's float32 curve, times 10.
Prints each comparison's largest difference relative to the tensor's largest magnitude
and exits 1 when one is past its tolerance.

Usage: python3 bench/transformer_fidelity.py DIR [--steps]
"""

import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fidelity_common import Checks, load  # noqa: E402


class Block(nn.Module):
    def __init__(self, d, heads, bias):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d, bias=bias)
        self.attn = nn.Linear(d, 3 * d, bias=bias)
        self.attn_proj = nn.Linear(d, d, bias=bias)
        self.ln2 = nn.LayerNorm(d, bias=bias)
        self.fc = nn.Linear(d, 4 * d, bias=bias)
        self.mlp_proj = nn.Linear(4 * d, d, bias=bias)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.attn(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.fc(self.ln2(x))))


class Gpt(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.wte = nn.Embedding(c["vocab"], d)
        self.wpe = nn.Embedding(c["context"], d)
        self.blocks = nn.ModuleList(Block(d, c["heads"], c["bias"]) for _ in range(c["layers"]))
        self.ln_f = nn.LayerNorm(d, bias=c["bias"])

    def forward(self, idx):
        t = idx.shape[1]
        h = self.wte(idx) + self.wpe(torch.arange(t))
        for b in self.blocks:
            h = b(h)
        return (self.ln_f(h) @ self.wte.weight.T).reshape(-1, self.wte.weight.shape[0])

    def in_runners_order(self):
        """(parameter, is a linear layer's matrix stored (out, in) in PyTorch and (in, out) in runner)."""
        out = [(self.wte.weight, False), (self.wpe.weight, False)]

        def norm(n):
            return [(n.weight, False)] + ([(n.bias, False)] if n.bias is not None else [])

        def linear(l):
            return [(l.weight, True)] + ([(l.bias, False)] if l.bias is not None else [])

        for b in self.blocks:
            out += norm(b.ln1) + linear(b.attn) + linear(b.attn_proj) + norm(b.ln2) + linear(b.fc) + linear(b.mlp_proj)
        return out + norm(self.ln_f)



def build(c, t, dtype=torch.float32):
    model = Gpt(c)
    with torch.no_grad():
        for i, (p, transposed) in enumerate(model.in_runners_order()):
            w = t[f"init.{i}"]
            p.copy_(w.T if transposed else w)
    return model.to(dtype)


def main():
    directory = sys.argv[1]
    c, t = load(directory)
    torch.set_num_threads(1)
    checks = Checks()
    failures, compare = checks.failures, checks.compare

    model = build(c, t)
    count = sum(p.numel() for p in model.parameters())
    if count != c["parameters"]:
        failures.append(f"parameters: {count} in PyTorch, {c['parameters']} in runner")
    x, y = t["x"].long(), t["y"].long()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    worst_logits = compare("logits", t["logits"], logits, 1e-5)
    compare("loss", t["loss"], loss.reshape(1), 1e-6)
    worst_grad = 0.0
    for i, (p, transposed) in enumerate(model.in_runners_order()):
        g = p.grad.T if transposed else p.grad
        worst_grad = max(worst_grad, compare(f"gradient of param.{i}", t[f"grad.{i}"], g, 1e-4))

    # The training steps from the same start on the same batches, in float32 and float64.
    def curve(dtype):
        model = build(c, t, dtype)
        params = model.in_runners_order()
        decay = [p for p, matrix in params if matrix]
        rest = [p for p, matrix in params if not matrix]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
            lr=c["lr"],
            betas=(c["beta1"], c["beta2"]),
            eps=c["eps"],
        )
        out = []
        for k in range(c["steps"]):
            opt.zero_grad()
            step_loss = F.cross_entropy(model(t[f"batch_x.{k}"].long()), t[f"batch_y.{k}"].long())
            out.append(step_loss.item())
            step_loss.backward()
            opt.step()
        return torch.tensor(out, dtype=torch.float64)

    losses, exact = curve(torch.float32), curve(torch.float64)
    ours = t["losses"].double()
    per_step = ((ours - exact).abs() / exact.abs()).max().item()
    torch_per_step = ((losses - exact).abs() / exact.abs()).max().item()
    if len(sys.argv) > 2:
        for k, (a, b, e) in enumerate(zip(ours.tolist(), losses.tolist(), exact.tolist())):
            print(f"step {k}: runner {a:.7f} pytorch {b:.7f} pytorch float64 {e:.7f}")
    if not per_step <= max(10 * torch_per_step, 1e-5):
        failures.append(
            f"{c['steps']}-step losses: runner is up to {per_step:.2e} from PyTorch's float64 curve, PyTorch's float32 "
            f"up to {torch_per_step:.2e} (tolerance: 10 times that)"
        )
    print(
        f"transformer, {c['layers']} layers of {c['d_model']}, {count} parameters, {x.shape[0]} windows of {x.shape[1]} "
        f"tokens: largest differences relative to each tensor's largest value: logits {worst_logits:.1e}, gradients "
        f"{worst_grad:.1e}; {c['steps']} AdamW steps: losses {ours[0].item():.4f} -> {ours[-1].item():.4f} (PyTorch "
        f"{losses[0].item():.4f} -> {losses[-1].item():.4f}); largest relative difference from PyTorch's float64 curve: "
        f"runner {per_step:.1e}, PyTorch float32 {torch_per_step:.1e}"
    )
    if failures:
        print("PyTorch and runner disagree:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("runner and PyTorch agree")


if __name__ == "__main__":
    main()
