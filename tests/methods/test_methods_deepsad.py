"""Deep SAD / Deep SVDD: the official networks, the centre rule, the semi-supervised draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fgad.data import one_vs_all
from fgad.errors import ConfigError, InputError
from fgad.io.preprocess import as_image_array
from fgad.methods import FitContext, create_method
from fgad.methods.deepsad import CENTER_EPS, DeepSAD, DeepSVDD, n_known_classes, n_labelled_anomalies
from fgad.nets.lenet import (
    BiasFreeWRN,
    Cifar10LeNet,
    Cifar10LeNetDecoder,
    MnistLeNet,
    MnistLeNetDecoder,
    build_deepsad_nets,
)


@pytest.mark.parametrize("enc,dec,shape,rep", [
    (MnistLeNet(), MnistLeNetDecoder(), (2, 1, 28, 28), 32),
    (Cifar10LeNet(), Cifar10LeNetDecoder(), (2, 3, 32, 32), 128),
    (BiasFreeWRN(10, 1, 1), Cifar10LeNetDecoder(128, 1), (2, 1, 32, 32), 128),
])
def test_networks_are_bias_free_and_mirror(enc, dec, shape, rep):
    x = torch.rand(shape)
    z = enc(x)
    assert z.shape == (shape[0], rep)
    y = dec(z)
    assert y.shape == x.shape and ((y >= 0) & (y <= 1)).all()
    for m in list(enc.modules()) + list(dec.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            assert m.bias is None
        if isinstance(m, nn.BatchNorm2d):
            assert not m.affine
    assert [p.numel() for p in MnistLeNet().parameters()] == [8 * 25, 4 * 8 * 25, 32 * 4 * 7 * 7]


def test_official_counts():
    assert [n_known_classes(r, 9) for r in (0.10, 0.25, 0.75)] == [1, 2, 7]
    assert [n_known_classes(r, 19) for r in (0.10, 0.25, 0.75)] == [2, 5, 14]
    assert n_known_classes(0.10, 2) == 1
    assert n_labelled_anomalies(0.05, 6000) == 315  # 5% of normal + labelled
    assert n_labelled_anomalies(0.05, 4) == 1


def test_center_rule_and_scores_are_distances(image_sets):
    det = DeepSVDD("tiny", 0).fit(image_sets["grey"], FitContext(progress=False))
    c = det.c
    assert ((c.abs() >= CENTER_EPS) | (c == 0)).all()
    with torch.no_grad():
        z = det.encoder(det.network_inputs(as_image_array(image_sets["grey"][:2]), torch.device("cpu")))
    np.testing.assert_allclose(det.score(image_sets["grey"][:2]), ((z - c) ** 2).sum(1).double().numpy(), rtol=1e-6)


def test_fit_from_dataset_records_the_draw(make_dataset):
    ds = make_dataset("grey")
    det = create_method("deepsad-75", "tiny", 3, ratio_known_outlier=0.2)
    det.fit(one_vs_all(ds, "b")[0], FitContext(dataset=ds, normal_class="b", progress=False))
    lab = det.info["labelled_anomalies"]
    assert lab["n_anomaly_classes"] == 2 and len(lab["known_classes"]) == 2 and 1 not in lab["known_classes"]
    assert lab["count"] == n_labelled_anomalies(0.2, 4) == len(lab["indices"])
    assert all(ds.y_train[i] in lab["known_classes"] for i in lab["indices"])
    assert "round(0.75" in lab["rule"]
    again = create_method("deepsad-75", "tiny", 3, ratio_known_outlier=0.2).fit(
        one_vs_all(ds, "b")[0], FitContext(dataset=ds, normal_class="b", progress=False))
    assert again.info["labelled_anomalies"]["indices"] == lab["indices"]  # the seed fixes the draw
    det = create_method("deepsad-10", "tiny", 0, n_known_outliers=2).fit(
        one_vs_all(ds, 0)[0], FitContext(dataset=ds, normal_class=0, progress=False))
    assert det.info["labelled_anomalies"]["count"] == 2 and len(det.info["labelled_anomalies"]["known_classes"]) == 1


def test_labelled_anomalies_are_pushed_away(image_sets):
    x = image_sets["grey"]
    kw = dict(ae_epochs=0, epochs=30, lr=1e-2, batch_size=8)
    base = DeepSAD("tiny", 0, **kw).fit(x[:4], FitContext(progress=False))
    sad = DeepSAD("tiny", 0, **kw).fit(x[:4], FitContext(labelled_anomalies=x[4:], progress=False))
    gap = lambda d: d.score(x[4:]).mean() / d.score(x[:4]).mean()  # noqa: E731
    assert gap(sad) > gap(base)


def test_options_and_errors(image_sets):
    with pytest.raises(ConfigError, match="unknown option"):
        DeepSVDD("tiny", 0, nu=0.1)
    with pytest.raises(ConfigError, match="net"):
        DeepSVDD("tiny", 0, net="resnet")
    with pytest.raises(ConfigError, match="deepsvdd"):
        create_method("deepsvdd", "tiny", 0, known_fraction=0.1)
    with pytest.raises(InputError, match="labelled anomalies"):
        DeepSAD("tiny", 0).fit(image_sets["grey"], FitContext(labelled_anomalies=image_sets["colour"], progress=False))
    enc, _ = build_deepsad_nets("wrn", 3, 10, 1)
    assert isinstance(enc, BiasFreeWRN)
    det = DeepSVDD("tiny", 0, net="wrn").fit(image_sets["grey"][:3], FitContext(progress=False))  # 28 padded to 32
    assert np.isfinite(det.score(image_sets["grey"][:3])).all()
