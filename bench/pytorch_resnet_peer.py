"""The peer of `cargo bench --bench resnet_throughput`: ResNet-20 training in PyTorch on CPU.

Reads the CIFAR-10 binary files the bench wrote (data_batch_*.bin), normalises each
channel with the training images' mean and std as runner's scale = "channels", builds the
ResNet-20 of bench/resnet_fidelity.py (He et al. 2016, option A; the network the fidelity
check compares with runner's) and trains it as the bench runs runner: batches of 128 in a
shuffled order, SGD with momentum 0.9 and weight decay 1e-4 on convolution and linear
weights, no augmentation. WARMUP steps are not timed; the next STEPS are.

Usage: python3 bench/pytorch_resnet_peer.py DIR THREADS WARMUP STEPS [DEVICE [TF32]]
DEVICE: cpu (default) or cuda (the peer of `cargo bench --bench gpu_throughput`: the data
set on the GPU, batches gathered there, the time taken after a synchronize); TF32 = 1
lets matrix products and convolutions use TF32 (PyTorch's default is off for matrix products).
Prints one line: `samples/s S peak_mb M` (M: host memory; on a GPU also `gpu_mb G`).
"""

import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet_fidelity import Resnet  # noqa: E402


def main():
    directory, threads, warmup, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    device = torch.device(sys.argv[5] if len(sys.argv) > 5 else "cpu")
    tf32 = len(sys.argv) > 6 and sys.argv[6] == "1"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    raw = np.concatenate(
        [np.fromfile(f"{directory}/data_batch_{k}.bin", dtype=np.uint8).reshape(-1, 3073) for k in range(1, 6)]
    )
    y = torch.from_numpy(raw[:, 0].astype(np.int64))
    x = torch.from_numpy(raw[:, 1:].astype(np.float32).reshape(-1, 3, 32, 32))
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    x = ((x - mean) / std).to(device)
    y = y.to(device)
    model = Resnet(20, 10).to(device)
    model.train()
    decay = [layer.conv.weight for layer in model.layers()] + [model.fc.weight]
    rest = [p for p in model.parameters() if all(p is not d for d in decay)]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": rest, "weight_decay": 0.0}], lr=0.1, momentum=0.9)
    order = torch.randperm(x.shape[0]).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            sync()
            start = time.perf_counter()
        idx = order[(step * 128) % x.shape[0] :][:128]
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    sync()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = f" gpu_mb {torch.cuda.max_memory_allocated() / 2**20:.0f}" if device.type == "cuda" else ""
    print(f"samples/s {steps * 128 / seconds:.1f} peak_mb {peak:.0f}{gpu}")


if __name__ == "__main__":
    main()
