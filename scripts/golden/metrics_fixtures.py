#!/usr/bin/env python3
"""Golden fixtures for sanity-metrics: Spearman, Pearson and Kendall's tau-b (scipy), SSIM (scikit-image), and
cosine, MSE, top-k intersection (numpy), discrete entropy (numpy.histogram + scipy.stats.entropy,
as Quantus) and HOG (scikit-image).

Pinned versions (the fixtures in crates/sanity-metrics/tests/fixtures/metrics.json were made
with exactly these):
    numpy==2.4.6  scipy==1.17.1  scikit-image==0.26.0

Run:  python3 scripts/golden/metrics_fixtures.py
Every input is float32 (as our maps are); the references compute in float64.
"""
import json
import pathlib

import numpy as np
import scipy
import scipy.stats
import skimage
from skimage.metrics import structural_similarity

from fixture_json import F32List, F64List, dumps  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/sanity-metrics/tests/fixtures/metrics.json"


def case(name, a, b, ssim_settings):
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    rho = scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic
    ssims = []
    for s in ssim_settings:
        kw = dict(data_range=s["data_range"], K1=0.01, K2=0.03, use_sample_covariance=True)
        if s["window"] == "gaussian":
            kw.update(gaussian_weights=True, sigma=1.5)
        else:
            kw.update(win_size=s["size"])
        if a.shape[0] > 1:
            value = structural_similarity(a.astype(np.float64), b.astype(np.float64), channel_axis=0, **kw)
        else:
            value = structural_similarity(a[0].astype(np.float64), b[0].astype(np.float64), **kw)
        ssims.append(dict(s, value=float(value)))
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    pearson = scipy.stats.pearsonr(a64, b64).statistic
    kendall = scipy.stats.kendalltau(a64, b64).statistic
    cosine = float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)))
    mse = float(np.mean((a64 - b64) ** 2))
    entropy = [dict(bins=bins, a=float(scipy.stats.entropy(np.histogram(a.ravel(), bins=bins)[0])),
                    b=float(scipy.stats.entropy(np.histogram(b.ravel(), bins=bins)[0]))) for bins in (100, 7)]
    k = max(1, a64.size // 10)
    top_a = set(np.argsort(-a.ravel(), kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b.ravel(), kind="stable")[:k].tolist())
    return dict(name=name, shape=list(a.shape), a=F32List(a), b=F32List(b),
                spearman=None if np.isnan(rho) else float(rho), ssim=ssims, pearson=float(pearson), kendall_tau_b=float(kendall),
                cosine=cosine, mse=mse, top_k=dict(k=k, value=len(top_a & top_b) / k), entropy=entropy)


def adebayo_abs(m, p):
    """PAIR saliency's VisualizeImageGrayscale on a [c, h, w] map (channels first here)."""
    x = np.sum(np.abs(m.astype(np.float64)), axis=0)
    vmax, vmin = np.percentile(x, p), np.min(x)
    return np.clip((x - vmin) / (vmax - vmin), 0, 1)[None]


def adebayo_diverging(m, p):
    """PAIR saliency's VisualizeImageDiverging on a [c, h, w] map."""
    x = np.sum(m.astype(np.float64), axis=0)
    span = abs(np.percentile(x, p))
    return np.clip((x + span) / (2 * span), -1, 1)[None]


def clip_percentile(m, p):
    cap = np.percentile(np.abs(m.astype(np.float64)), p)
    return np.clip(m.astype(np.float64), -cap, cap)


def postprocess_cases(rng):
    maps = [rng.normal(size=(3, 16, 16)), rng.random((1, 13, 17)), rng.integers(-3, 4, (2, 9, 9)).astype(float)]
    out = []
    for m in maps:
        m = m.astype(np.float32)
        for step, f in [({"step": "adebayo_abs"}, lambda m: adebayo_abs(m, 99)),
                        ({"step": "adebayo_abs", "percentile": 90.0}, lambda m: adebayo_abs(m, 90)),
                        ({"step": "adebayo_diverging"}, lambda m: adebayo_diverging(m, 99)),
                        ({"step": "clip_percentile", "p": 95.0}, lambda m: clip_percentile(m, 95))]:
            r = f(m)
            out.append(dict(step=step, shape=list(m.shape), input=F32List(m), out_shape=list(r.shape),
                            output=F64List(r)))
    return out


def hog_cases(rng):
    from skimage.feature import hog
    out = []
    smooth = np.cumsum(np.cumsum(rng.random((32, 32)), 0), 1)
    for m, params in [
        (rng.random((1, 28, 28)), dict(orientations=9, pixels_per_cell=(7, 7), cells_per_block=(2, 2))),
        ((smooth / smooth.max())[None], dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3))),
        (rng.random((3, 24, 24)), dict(orientations=6, pixels_per_cell=(8, 8), cells_per_block=(2, 2))),
        (rng.integers(0, 3, (1, 21, 19)) / 2.0, dict(orientations=7, pixels_per_cell=(5, 6), cells_per_block=(2, 1))),
    ]:
        m = m.astype(np.float32)
        image = m[0].astype(np.float64) if m.shape[0] == 1 else np.moveaxis(m.astype(np.float64), 0, -1)
        features = hog(image, block_norm="L2-Hys", feature_vector=True, channel_axis=None if m.shape[0] == 1 else -1,
                       **params)
        other = (m + 0.3 * rng.random(m.shape)).astype(np.float32)
        other_image = (other[0].astype(np.float64) if m.shape[0] == 1
                       else np.moveaxis(other.astype(np.float64), 0, -1))
        other_features = hog(other_image, block_norm="L2-Hys", feature_vector=True,
                             channel_axis=None if m.shape[0] == 1 else -1, **params)
        similarity = dict(pearson=float(scipy.stats.pearsonr(features, other_features).statistic),
                          spearman=float(scipy.stats.spearmanr(features, other_features).statistic))
        out.append(dict(shape=list(m.shape), map=F32List(m), other=F32List(other), similarity=similarity,
                        params=dict(
            orientations=params["orientations"], pixels_per_cell=list(params["pixels_per_cell"]),
            cells_per_block=list(params["cells_per_block"])), features=F64List(features)))
    return out


def main():
    rng = np.random.default_rng(20181029)
    gauss1 = dict(window="gaussian", data_range=1.0)
    gauss2 = dict(window="gaussian", data_range=2.0)
    unif7 = dict(window="uniform", size=7, data_range=1.0)
    cases = []
    a = rng.random((1, 28, 28))
    cases.append(case("random_28", a, rng.random((1, 28, 28)), [gauss1, gauss2, unif7]))
    cases.append(case("correlated_28", a, 0.7 * a + 0.3 * rng.random((1, 28, 28)), [gauss1, unif7]))
    ties_a = rng.integers(0, 4, (1, 16, 16)) / 3.0
    ties_b = rng.integers(0, 3, (1, 16, 16)) / 2.0
    cases.append(case("ties_16", ties_a, ties_b, [gauss1, unif7]))
    cases.append(case("odd_13x17", rng.random((1, 13, 17)), rng.random((1, 13, 17)), [gauss1, unif7]))
    signed = rng.normal(size=(1, 20, 20))
    cases.append(case("signed_20", signed, signed + 0.5 * rng.normal(size=(1, 20, 20)), [gauss2]))
    cases.append(case("multichannel_3x16", rng.random((3, 16, 16)), rng.random((3, 16, 16)), [gauss1, unif7]))
    big = rng.random((1, 224, 224))
    smooth = np.cumsum(np.cumsum(big, axis=1), axis=2)
    smooth = smooth / smooth.max()
    cases.append(case("smooth_224", smooth, smooth + 0.05 * rng.random((1, 224, 224)), [gauss1]))
    fixture = dict(
        generator="scripts/golden/metrics_fixtures.py",
        versions=dict(numpy=np.__version__, scipy=scipy.__version__, skimage=skimage.__version__),
        cases=cases,
        postprocess=postprocess_cases(np.random.default_rng(2018_99)),
        hog=hog_cases(np.random.default_rng(2005_0620)),
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dumps(fixture))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
