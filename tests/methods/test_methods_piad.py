"""PIAD: VGG-19 weights from safetensors / torchvision .pth files, the missing-weights error, the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fgad.errors import ConfigError
from fgad.methods import FitContext, get_method
from fgad.methods.piad import PIAD, GradNormPolicy, ewma
from fgad.nets.piad_nets import Encoder, Generator, LatentDiscriminator
from fgad.nets.vgg import LAYER_INDEX, VGG19Features, load_vgg19_weights


@pytest.fixture(scope="module")
def vgg_state() -> dict[str, torch.Tensor]:
    """A random VGG-19 state dict with torchvision's names (up to relu4_2, plus a classifier key)."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in VGG19Features("relu4_2").features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files have more: ignored
    return state


def test_vgg_layer_indices_match_torchvision():
    assert LAYER_INDEX["conv4_2"] == 21 and LAYER_INDEX["relu4_2"] == 22 and LAYER_INDEX["pool5"] == 36
    names = list(VGG19Features("relu4_2").state_dict())
    assert names[0] == "features.0.weight" and names[-1] == "features.21.bias"


def test_missing_weights_is_one_line_config_error():
    with pytest.raises(ConfigError) as err:
        PIAD("tiny", 0)
    msg = str(err.value)
    assert "\n" not in msg and "VGG-19" in msg and "vgg_weights" in msg and "FGAD_VGG19_WEIGHTS" in msg
    with pytest.raises(ConfigError, match="does not exist"):
        PIAD("tiny", 0, vgg_weights="/nonexistent/vgg19.safetensors").fit(np.zeros((2, 32, 32), np.uint8))


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_end_to_end_with_weights_file(suffix, vgg_state, image_sets, tmp_path, monkeypatch):
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".safetensors":
        save_file(vgg_state, str(path))
        det = PIAD("tiny", 0, vgg_weights=str(path))
    else:
        torch.save(vgg_state, path)
        monkeypatch.setenv("FGAD_VGG19_WEIGHTS", str(path))
        det = PIAD("tiny", 0)
    x = image_sets["grey"][:4]
    det.fit(x, FitContext(progress=False))
    got = det.vgg.state_dict()
    for k, v in got.items():
        torch.testing.assert_close(v, vgg_state[k], rtol=0, atol=0)
    scores = det.score(x)
    assert scores.shape == (4,) and np.isfinite(scores).all() and (scores > 0).all()
    assert det.info["vgg_weights"] == str(path)
    det.save(tmp_path / "model")
    path.unlink()  # the saved model carries the VGG layers it uses
    monkeypatch.delenv("FGAD_VGG19_WEIGHTS", raising=False)
    np.testing.assert_array_equal(get_method("piad").loader(tmp_path / "model").score(x), scores)


def test_weights_file_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(ConfigError, match="features.0"):
        PIAD("tiny", 0, vgg_weights=str(bad)).fit(np.zeros((2, 32, 32), np.uint8), FitContext(progress=False))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a file")
    with pytest.raises(ConfigError, match="cannot read"):
        load_vgg19_weights(junk)
    bare = tmp_path / "features_only.safetensors"  # vgg19().features.state_dict(): no prefix
    save_file({k.removeprefix("features."): v for k, v in VGG19Features("relu1_1").state_dict().items()}, str(bare))
    assert set(load_vgg19_weights(bare)) == {"features.0.weight", "features.0.bias"}


def test_relative_perceptual_loss_and_networks():
    det = PIAD("tiny", 0, allow_random_vgg=True)
    det.vgg = det.load_vgg()
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    assert torch.allclose(det.perceptual(x, x), torch.zeros(3))
    y = x + 0.5 * torch.randn_like(x)
    f = lambda t: det.vgg(det.vgg.normalise((t + 1) / 2))  # noqa: E731
    want = (f(x) - f(y)).abs().mean((1, 2, 3)) / f(x).abs().mean((1, 2, 3))
    torch.testing.assert_close(det.perceptual(x, y), want)
    enc, gen = Encoder(32, 3, 16, (8, 8, 8, 8)), Generator(32, 3, 16, (8, 8, 8, 8))
    z = enc(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, 16, 1, 1) and gen(z).shape == (2, 3, 32, 32)
    assert Encoder(32, 1, 1, (8, 8, 8, 8), minibatch_std=True)(torch.randn(2, 1, 32, 32)).shape == (2, 1, 1, 1)
    assert LatentDiscriminator(16, (8, 8))(z).shape == (2, 1, 1, 1)
    with pytest.raises(ConfigError, match="channel sizes"):
        PIAD("tiny", 0, allow_random_vgg=True, enc_dims=(8, 8, 8))._resolve_arch(1)


def test_grad_norm_policy_weight():
    assert np.allclose(ewma([1.0, 3.0], 0.5), [1.0, 2.0])
    pol = GradNormPolicy()
    w = torch.nn.Parameter(torch.ones(4))
    named = [("w.weight", w)]
    pol.record("enc", "adv", named, (w * torch.tensor([1.0, -1.0, 2.0, 0.0])).sum())
    pol.record("enc", "rec", named, (w * torch.tensor([2.0, -2.0, 4.0, 0.0])).sum())
    assert pol.weight("enc") == pytest.approx(0.5)
