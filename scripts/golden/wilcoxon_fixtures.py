#!/usr/bin/env python3
"""Reference p-values of the two-sided Wilcoxon signed-rank test for
crates/sanity-experiments/src/statistics.rs (`wilcoxon_matches_scipy`).

Pinned: scipy==1.17.1 numpy==2.4.6. Prints Rust array literals to paste into the test.
"""
import numpy as np
from scipy.stats import wilcoxon

cases = {
    # No ties, no zeros: the exact null distribution.
    "exact": ([0.31, -0.12, 0.57, 0.08, -0.44, 0.92, 0.26, 0.13, -0.05, 0.71], "exact"),
    "exact_one_sided_data": ([0.5, 1.5, 2.25, 3.0, 0.75, 1.25, -0.1, 2.0], "exact"),
    # Ties and zeros: the normal approximation with the tie correction, no continuity correction.
    "ties": ([0.2, -0.2, 0.2, 0.0, 0.5, 0.5, -0.1, 0.3, 0.0, 0.2, 0.4, -0.5, 0.6, 0.2, 0.1], "asymptotic"),
}
# n = 300 integers with many ties and zeros; the Rust test builds the same values.
cases["large"] = ([float((i * 37) % 23 - 10) for i in range(300)], "asymptotic")
for name, (d, method) in cases.items():
    r = wilcoxon(d, method=method, correction=False, zero_method="wilcox")
    print(f"// {name}: method={method}")
    shown = "large_values()" if name == "large" else repr(list(map(float, d))).replace("[", "&[", 1)
    print(f"({shown}, {float(r.statistic)!r}, {float(r.pvalue)!r}),")
