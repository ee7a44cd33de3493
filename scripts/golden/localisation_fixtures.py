#!/usr/bin/env python3
"""Golden fixtures for sanity-metrics' localisation metrics (crates/sanity-metrics/src/localisation.rs):
Quantus 0.6's PointingGame, RelevanceMassAccuracy, RelevanceRankAccuracy, AUC, TopKIntersection
(localisation) and AttributionLocalisation on committed maps and masks.

Pinned versions (the fixtures in crates/sanity-metrics/tests/fixtures/localisation.json were
made with exactly these):
    quantus==0.6.0  numpy==2.4.6  scikit-learn==1.9.1  torch==2.15.0

Run:  python3 scripts/golden/localisation_fixtures.py

The maps are float32 (as ours are) and handed to Quantus as float64, so that Quantus computes in
float64 as we do; `normalise=False, abs=False` everywhere, because in `sanity` normalising and
taking absolute values are post-processing steps that run before any metric. Maps whose ties
would reach Quantus' unstable argsort (a tie at the maximum, or at the rank accuracy's or
top-k's cut) have no Quantus reference: for those the fixture gives the expectation over every
order of the tied values, computed here from the counts, and Quantus' own value beside it.
Where Quantus gives NaN the fixture holds null.
"""
import json
import pathlib
import warnings

import numpy as np
import quantus
import sklearn

from fixture_json import F32List, dumps  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/sanity-metrics/tests/fixtures/localisation.json"


def quantus_scores(a, s, ks):
    """Quantus' scores of map `a` [h, w] against mask `s` [h, w] (bool)."""
    x = np.zeros((1, 1) + a.shape, dtype=np.float32)
    a_batch = a.astype(np.float64)[None, None]
    s_batch = s.astype(np.float32)[None, None]
    common = dict(model=None, x_batch=x, y_batch=np.array([0]), a_batch=a_batch, s_batch=s_batch, device="cpu")
    off = dict(normalise=False, abs=False, disable_warnings=True)

    def one(metric):
        value = float(np.asarray(metric(**common), dtype=np.float64)[0])
        return None if np.isnan(value) else value  # JSON has no NaN: null where Quantus gives NaN

    out = dict(
        pointing_game=one(quantus.PointingGame(**off)),
        relevance_mass_accuracy=one(quantus.RelevanceMassAccuracy(**off)),
        relevance_rank_accuracy=one(quantus.RelevanceRankAccuracy(**off)),
        auc=one(quantus.AUC(**off)),
        attribution_localisation=one(quantus.AttributionLocalisation(**off)),
        attribution_localisation_positive=one(quantus.AttributionLocalisation(positive_attributions=True, **off)),
        top_k=[dict(k=k, concept_influence=ci, value=one(quantus.TopKIntersection(k=k, concept_influence=ci, **off)))
               for k in ks for ci in (False, True)],
    )
    return out


def expected_top_share(a, s, k):
    """The share of mask pixels among the k largest values, ties at the cut in proportion."""
    flat, mask = a.ravel(), s.ravel()
    cut = np.sort(flat)[::-1][k - 1]
    above = flat > cut
    tied = flat == cut
    need = k - above.sum()
    return float((mask[above].sum() + need * mask[tied].sum() / tied.sum()) / k)


def tie_references(a, s, ks):
    flat, mask = a.ravel(), s.ravel()
    maxima = flat == flat.max()
    return dict(
        pointing_game=float(mask[maxima].sum() / maxima.sum()),
        relevance_rank_accuracy=expected_top_share(a, s, int(mask.sum())),
        top_k=[dict(k=k, value=expected_top_share(a, s, k)) for k in ks],
    )


def blob_mask(rng, h, w):
    """An ellipse at a random place, as a lesion mask."""
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    ry, rx = rng.uniform(0.12, 0.3) * h, rng.uniform(0.12, 0.3) * w
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def main():
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(21)
    cases = []

    def add(name, a, s, ties=False):
        a = np.asarray(a, dtype=np.float32)
        s = np.asarray(s, dtype=bool)
        n, area = a.size, int(s.sum())
        ks = sorted({1, max(1, area // 2), area, min(n - 1, area + 7)})
        case = dict(name=name, shape=list(a.shape), map=F32List(a), mask=[int(v) for v in s.ravel()],
                    quantus=quantus_scores(a, s, ks))
        if ties:
            case["expected"] = tie_references(a, s, ks)
        cases.append(case)

    # Tie-free maps: Quantus' value is ours.
    for h, w in [(8, 8), (16, 12), (28, 28), (64, 64)]:
        s = blob_mask(rng, h, w)
        add(f"normal {h}x{w}", rng.standard_normal((h, w)), s)
        add(f"nonnegative {h}x{w}", np.abs(rng.standard_normal((h, w))), s)
        # A map that points at the mask: larger values inside.
        add(f"pointing {h}x{w}", rng.uniform(0, 1, (h, w)) + 0.8 * s, s)
    s = np.zeros((10, 10), dtype=bool)
    s[0, 0] = True
    add("one-pixel mask", rng.uniform(0, 1, (10, 10)), s)
    s = np.ones((6, 7), dtype=bool)
    s[3, 4] = False
    add("mask all but one", rng.uniform(0, 1, (6, 7)), s)

    # Ties: clipped at a percentile (the top values tied at 1, as adebayo_abs_99 leaves them),
    # and a map quantised to a few levels.
    h, w = 28, 28
    s = blob_mask(rng, h, w)
    m = np.abs(rng.standard_normal((h, w))) + 1.5 * s
    clipped = np.clip(m / np.percentile(m, 90), 0, 1)
    add("clipped at the 90th percentile", clipped, s, ties=True)
    add("four levels", np.floor(rng.uniform(0, 4, (h, w))), s, ties=True)

    OUT.write_text(dumps(dict(versions=dict(quantus=quantus.__version__, numpy=np.__version__,
                                              sklearn=sklearn.__version__), cases=cases)) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
