"""Small user data like the issue's (scikit-learn's digits: 1 797 images of 8x8): the first
1 797 Fashion-MNIST training images, their 24x24 centre averaged over 3x3 blocks to 8x8, as
x.npy (float32 [n, 8, 8], 0..1) and y.npy (float32 labels). Standard library only.
Usage: python3 make_arrays.py [FASHION_MNIST_DIR] (default /usr/share/datasets/fashion-mnist)."""
import gzip
import struct
import sys

DIR = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
N = 1797


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    return data[16:] if magic == 2051 else data[8:]


def npy(path, shape, values):
    dims = ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "")
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % dims
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%df" % len(values), *values))


pixels = idx(f"{DIR}/train-images-idx3-ubyte.gz")
labels = idx(f"{DIR}/train-labels-idx1-ubyte.gz")
images = []
for k in range(N):
    base = k * 784
    for i in range(8):
        for j in range(8):
            block = [pixels[base + (2 + 3 * i + di) * 28 + 2 + 3 * j + dj] for di in range(3) for dj in range(3)]
            images.append(sum(block) / 9 / 255.0)
npy("x.npy", [N, 8, 8], images)
npy("y.npy", [N], [float(labels[k]) for k in range(N)])
