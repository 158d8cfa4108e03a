"""The peer of `cargo bench --bench throughput`: the same training as `runner run` in PyTorch on CPU.

Reads the MNIST-format IDX files the bench wrote (train-* for training, t10k-* for
validation; pixels scaled to [0, 1] as runner's scale = "pixels"), builds the same model,
and trains it as runner does: batch 128, shuffled each epoch, SGD with momentum 0.9, the
rate set before every step from a cosine decay over the run, and an evaluation of the whole
validation part (loss and accuracy, no gradients, batches of 1024) at the end of every
epoch, inside the epoch's time. The first epoch warms up; the median of the others is
reported with the process's peak resident memory.

Models (runner's `mlp` with hidden = [256, 128], and the `cnn` defaults):
  mlp: 784-256-128-10, ReLU
  cnn: conv 3x3 1->16 (same padding), ReLU, 2x2 max-pool, conv 3x3 16->32, ReLU, max-pool,
       dense 1568-64, ReLU, dense 64-10

Usage: python3 bench/pytorch_peer.py DIR MODEL THREADS EPOCHS
Prints one line: `samples/s S peak_mb M`.
"""

import gzip
import math
import resource
import sys
import time

import numpy as np
import torch


def read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def model_for(kind: str) -> torch.nn.Module:
    nn = torch.nn
    if kind == "mlp":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
        )
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )
    raise SystemExit(f"unknown model {kind}; expected mlp or cnn")


def main() -> None:
    directory, kind, threads, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def images(prefix: str) -> torch.Tensor:
        pixels = read_idx(f"{directory}/{prefix}-images-idx3-ubyte")
        return torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(1)

    def labels(prefix: str) -> torch.Tensor:
        return torch.from_numpy(read_idx(f"{directory}/{prefix}-labels-idx1-ubyte").astype(np.int64))

    x, y = images("train"), labels("train")
    vx, vy = images("t10k"), labels("t10k")
    n, batch = x.shape[0], 128
    model = model_for(kind)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    total = epochs * math.ceil(n / batch)
    step = 0
    epoch_seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(n)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            lr = 0.05 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            step += 1
        model.eval()
        with torch.no_grad():
            val_loss, correct = 0.0, 0
            for i in range(0, vx.shape[0], 1024):
                out = model(vx[i : i + 1024])
                val_loss += torch.nn.functional.cross_entropy(out, vy[i : i + 1024], reduction="sum").item()
                correct += (out.argmax(1) == vy[i : i + 1024]).sum().item()
        epoch_seconds.append(time.perf_counter() - start)
    later = sorted(epoch_seconds[1:])
    median = later[len(later) // 2]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"samples/s {n / median:.0f} peak_mb {peak_mb:.0f}", flush=True)


if __name__ == "__main__":
    main()
