#!/usr/bin/env python3
"""Golden fixtures for `occlusion` (Captum) and the `sobel` control (scikit-image), on the
PyTorch twins and formula weights of attribution_fixtures.py.

Pinned versions (crates/sanity-attribution/tests/fixtures/occlusion_sobel.json was made with
exactly these):
    torch==2.15.0  captum==0.9.0  scikit-image==0.26.0  numpy==2.4.6

Run:  python3 scripts/golden/occlusion_sobel_fixtures.py
"""
import pathlib

import captum
import numpy as np
import skimage
import torch
from captum.attr import Occlusion
from skimage.filters import sobel

from attribution_fixtures import AdebayoCNN, LessonCNN, PhantomCNN, formula_weights
from fixture_json import F32List, F64List, dumps

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/sanity-attribution/tests/fixtures/occlusion_sobel.json"
torch.set_num_threads(1)


def case(preset, model, input_shape, targets, occlusions, rng):
    c = input_shape[0]
    x = torch.from_numpy(rng.random((len(targets), *input_shape)).astype(np.float32))
    methods = []
    for window, stride, baseline in occlusions:
        attr = Occlusion(model).attribute(x, sliding_window_shapes=(c, window, window), strides=(1, stride, stride),
                                          baselines=baseline, target=torch.tensor(targets))
        methods.append(dict(spec={"method": "occlusion", "window": window, "stride": stride, "baseline": baseline},
                            values=F32List(attr.detach().numpy())))
    edges = np.stack([[sobel(plane.astype(np.float64)) for plane in image] for image in x.numpy()])
    methods.append(dict(spec={"method": "sobel"}, values=F64List(edges)))
    return dict(preset=preset, input_shape=list(input_shape), inputs=F32List(x.numpy()), targets=targets,
                methods=methods)


def main():
    rng = np.random.default_rng(1311_2901)
    adebayo, phantom = formula_weights(AdebayoCNN()), formula_weights(PhantomCNN())
    cases = [
        # 28 = 5 + 3·7 + 2: the last patch is cut at the border.
        case("adebayo-cnn", adebayo, (1, 28, 28), [3, 7, 0], [(5, 3, 0.0), (4, 4, 0.5)], rng),
        case("phantom-cnn", phantom, (1, 32, 32), [0, 0], [(8, 3, 0.25)], rng),
        case("lesson-cnn", formula_weights(LessonCNN()), (1, 64, 64), [0], [(16, 12, 0.0)], rng),
    ]
    fixture = dict(generator="scripts/golden/occlusion_sobel_fixtures.py",
                   versions=dict(torch=torch.__version__, captum=captum.__version__, skimage=skimage.__version__,
                                 numpy=np.__version__),
                   cases=cases)
    OUT.write_text(dumps(fixture))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
