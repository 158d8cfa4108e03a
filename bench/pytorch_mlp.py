"""The peer of `cargo bench --bench mlp_throughput`: the same training in PyTorch on CPU.

MLP 784-256-128-10 (ReLU), softmax cross-entropy, 60,000 synthetic samples (standard normal
inputs, uniform labels 0..9), batch 128, shuffled each epoch, SGD with momentum 0.9, the
rate set before every step from a cosine decay. Four epochs: the first warms up, the
median of the other three is reported (one epoch alone swings with the machine's load).
Prints one line per thread count: `threads N: S samples/s`.

Usage: python3 bench/pytorch_mlp.py [THREADS ...]   (default: 1 2)
"""

import math
import sys
import time

import torch


def main() -> None:
    threads = [int(t) for t in sys.argv[1:]] or [1, 2]
    g = torch.Generator().manual_seed(0)
    n, d, classes, batch = 60_000, 784, 10, 128
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    steps_per_epoch = math.ceil(n / batch)
    epochs = 4
    total = epochs * steps_per_epoch
    for t in threads:
        torch.set_num_threads(t)
        torch.manual_seed(42)
        model = torch.nn.Sequential(
            torch.nn.Linear(d, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, classes)
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()
        step = 0
        epoch_seconds = []
        for _epoch in range(epochs):
            start = time.perf_counter()
            order = torch.randperm(n, generator=g)
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
            epoch_seconds.append(time.perf_counter() - start)
        median = sorted(epoch_seconds[1:])[1]
        print(f"threads {t}: {n / median:.0f} samples/s", flush=True)


if __name__ == "__main__":
    main()
