#!/usr/bin/env python3
"""Reference colours of matplotlib's `jet`, `bwr` and `gray` for
crates/sanity-experiments/src/figures/colormap.rs (`jet_matches_matplotlib_at_its_knots`).

Pinned: matplotlib==3.10.9. Prints Rust tuple literals to paste into the test
(`colormaps[name](t, bytes=True)`: the 256-entry lookup table, truncated to bytes).
"""
import matplotlib

cases = [
    ("Jet", "jet", [0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0]),
    ("Bwr", "bwr", [0.0, 0.1, 0.5, 0.7, 1.0]),
    ("Gray", "gray", [0.1, 0.7]),
]
assert matplotlib.__version__ == "3.10.9", matplotlib.__version__
for rust, name, ts in cases:
    for t in ts:
        r, g, b = (int(v) for v in matplotlib.colormaps[name](t, bytes=True)[:3])
        print(f"(ColorMap::{rust}, {t}, [{r}, {g}, {b}]),")
