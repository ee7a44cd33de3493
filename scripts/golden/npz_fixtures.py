#!/usr/bin/env python3
"""Small NPY/NPZ files for crates/sanity-data/tests/arrays.rs (numpy's own writers).

Pinned: numpy==2.4.6. Run from the repository root:
    python3 scripts/golden/npz_fixtures.py
"""
import numpy as np

out = "crates/sanity-data/tests/fixtures"
rng = np.random.default_rng(0)
images = rng.random((6, 5, 4), dtype=np.float32)          # N x H x W, like the lesson's X-rays
labels = np.array([0, 1, 1, 0, 1, 0], dtype=np.int64)
np.save(f"{out}/images.npy", images)
np.save(f"{out}/labels.npy", labels)
np.savez(f"{out}/xrays.npz", images=images, labels=labels)
np.savez_compressed(f"{out}/xrays_compressed.npz", images=(images * 255).astype(np.uint8), labels=labels.astype(np.uint8))
np.save(f"{out}/images_fortran.npy", np.asfortranarray(rng.random((3, 2, 4, 4)).astype(np.float64)))
np.save(f"{out}/images_fortran_c.npy", np.ascontiguousarray(np.load(f"{out}/images_fortran.npy")))
print("written to", out)
