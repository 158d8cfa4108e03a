"""Writes the NumPy fixtures of tests/arrays_cli.rs (tests/fixtures/arrays/) and the digits
as an .npz and as PNG folders for configs/digits_npz.toml and configs/digits_folder_cnn.toml
(data/digits.npz, data/digits-png/), with numpy's own writers:
np.save, np.savez, np.savez_compressed, Fortran order and big-endian included.

Every image value is a formula of its position, (n * 7 + c * 3 + h * 5 + w) % 256 for
sample n, channel c, row h, column w; labels are n % 3. The tests compute the same.

    python tests/reference/make_arrays.py      # numpy 2.x and Pillow; from the repository root
"""
import gzip
import os

import numpy as np

OUT = "tests/fixtures/arrays"
os.makedirs(OUT, exist_ok=True)


def images(n, c, h, w):
    """[N, C, H, W] of the formula, as float64."""
    N, C, H, W = np.meshgrid(np.arange(n), np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    return ((N * 7 + C * 3 + H * 5 + W) % 256).astype(np.float64)


labels = lambda n: np.arange(n) % 3

# Colour images channel-last as u8, labels i32, compressed with other names.
x = images(12, 3, 6, 5)
np.savez_compressed(f"{OUT}/nhwc_u8.npz", images=x.transpose(0, 2, 3, 1).astype(np.uint8), labels=labels(12).astype(np.int32))
# Channel-first f32, labels i64, plain savez.
np.savez(f"{OUT}/nchw_f32.npz", x=x.astype(np.float32), y=labels(12).astype(np.int64))
# Grey images [N, H, W] u8 with labels u8; a validation file beside it.
g = images(9, 1, 6, 7)[:, 0]
np.savez(f"{OUT}/nhw_u8.npz", x=g.astype(np.uint8), y=labels(9).astype(np.uint8))
np.savez(f"{OUT}/nhw_u8_validation.npz", x=images(6, 1, 6, 7)[:, 0].astype(np.uint8), y=labels(6).astype(np.uint8))
# Features as .npy pairs: Fortran order f64 with float targets (regression), and
# big-endian f4 with big-endian i8 labels.
f = images(10, 1, 1, 6)[:, 0, 0]
np.save(f"{OUT}/fortran_x.npy", np.asfortranarray(f))
np.save(f"{OUT}/fortran_y.npy", (np.arange(10) * 0.5).astype(np.float64))
assert np.load(f"{OUT}/fortran_x.npy").flags.f_contiguous
np.save(f"{OUT}/big_x.npy", f.astype(">f4"))
np.save(f"{OUT}/big_y.npy", labels(10).astype(">i8").reshape(10, 1))
# What must be refused.
np.savez(f"{OUT}/object.npz", x=np.array([np.zeros(3), np.zeros(4)], dtype=object), y=np.arange(2))
np.savez(f"{OUT}/no_x.npz", features=f, y=labels(10))
np.savez(f"{OUT}/lengths.npz", x=f, y=labels(9))
np.savez(f"{OUT}/negative.npz", x=f, y=labels(10) - 1)
with open(f"{OUT}/corrupt.npz", "wb") as out:
    out.write(open(f"{OUT}/nchw_f32.npz", "rb").read()[:300])

# The embedded digits (data/digits.csv.gz: 64 pixels 0..16, then the label) as 8x8 images
# in [0, 1] (pixels / 16, as scale = "pixels" makes them) and int64 labels.
rows = np.loadtxt(gzip.open("data/digits.csv.gz", "rt"), delimiter=",", dtype=np.float64)
pixels = (rows[:, :64] / 16.0).astype(np.float32).reshape(-1, 8, 8)
np.savez_compressed("data/digits.npz", x=pixels, y=rows[:, 64].astype(np.int64))
print("wrote", sorted(os.listdir(OUT)), "and data/digits.npz")

# The same digits as grey 8x8 PNGs in class folders, for configs/digits_folder_cnn.toml
# (data/digits-png/<label>/<row>.png; pixels 0..16 as round(p * 255 / 16)).
from PIL import Image

for i, row in enumerate(rows):
    folder = f"data/digits-png/{int(row[64])}"
    os.makedirs(folder, exist_ok=True)
    pixels = np.round(row[:64] * 255 / 16).astype(np.uint8).reshape(8, 8)
    Image.fromarray(pixels, "L").save(f"{folder}/{i:04}.png", optimize=True)
print("wrote data/digits-png")
