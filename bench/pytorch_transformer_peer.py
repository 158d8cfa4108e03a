"""The peer of `cargo bench --bench transformer_throughput`: the character-level
transformer of configs/shakespeare_char.toml trained in PyTorch on CPU.

Reads the text (data/shakespeare.txt.gz, as runner embeds it), makes the character
vocabulary, builds the GPT of bench/transformer_fidelity.py (the model the fidelity check
compares with runner's) at the config's size (4 layers, 4 heads, 128 wide, windows of 64,
GPT-2 initialisation) and trains it as runner does: random windows of the first 90% of the
text in batches of BATCH, AdamW (betas 0.9/0.99, weight decay 0.1 on the matrices),
gradient norm clipped at 1. WARMUP steps are not timed; the next STEPS are.

Usage: python3 bench/pytorch_transformer_peer.py TEXT_GZ THREADS WARMUP STEPS BATCH [DEVICE [TF32]]
DEVICE: cpu (default) or cuda (the text on the GPU, windows gathered there, the time taken
after a synchronize); TF32 = 1 lets matrix products use TF32.
Prints one line: `tokens/s S peak_mb M` (on a GPU also `gpu_mb G`).
"""

import gzip
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transformer_fidelity import Gpt  # noqa: E402

CONTEXT = 64


def main():
    path, threads, warmup, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    device = torch.device(sys.argv[6] if len(sys.argv) > 6 else "cpu")
    tf32 = len(sys.argv) > 7 and sys.argv[7] == "1"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    text = gzip.open(path).read().decode()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text[: int(len(text) * 0.9)]], dtype=torch.long).to(device)
    config = {"vocab": len(chars), "context": CONTEXT, "d_model": 128, "heads": 4, "layers": 4, "bias": True}
    model = Gpt(config).to(device)
    for name, p in model.named_parameters():
        if p.dim() == 2:
            std = 0.02 / math.sqrt(8) if name.endswith("proj.weight") else 0.02
            torch.nn.init.normal_(p, 0.0, std)
    matrices = [p for _, (p, matrix) in enumerate(model.in_runners_order()) if matrix]
    rest = [p for p, matrix in model.in_runners_order() if not matrix]
    opt = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=2e-3, betas=(0.9, 0.99)
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    offsets = torch.arange(CONTEXT, device=device)
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            sync()
            start = time.perf_counter()
        ix = torch.randint(len(data) - CONTEXT, (batch,), device=device)
        x = data[ix[:, None] + offsets]
        y = data[ix[:, None] + offsets + 1]
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    sync()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = f" gpu_mb {torch.cuda.max_memory_allocated() / 2**20:.0f}" if device.type == "cuda" else ""
    print(f"tokens/s {steps * batch * CONTEXT / seconds:.1f} peak_mb {peak:.0f}{gpu}")


if __name__ == "__main__":
    main()
