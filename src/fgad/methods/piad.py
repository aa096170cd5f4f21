"""PIAD, perceptual image anomaly detection (Tuluptceva et al., ACPR 2019; official code ninatu/piad).

An encoder E and a generator G are trained adversarially in both spaces: an image critic tells
real images from G(z), z ~ N(0, I), and a latent critic tells z from E(x); both are WGAN-GP
critics. E and G also minimise the reconstruction loss between x and G(E(x)): the relative
perceptual L1 on ImageNet VGG-19 ``relu4_2`` features,

    L(x, y) = mean|f(x) − f(y)| / mean|f(x)|,   f = VGG-19 up to relu4_2,

with images mapped from [−1, 1] to [0, 1], grey ones repeated to 3 channels, ImageNet mean/std
normalisation. The anomaly score is L(x, G(E(x))): higher = more anomalous.

Pretrained VGG-19 weights are needed and are not downloaded: give a file with option
``vgg_weights=PATH`` or the environment variable ``FGAD_VGG19_WEIGHTS`` (safetensors, or a
torchvision ``vgg19`` state dict saved with ``torch.save``, read with ``weights_only=True``). The
layers used are stored with the saved model, so a saved model needs no weights file.
``allow_random_vgg=True`` uses a randomly initialised VGG-19 (seeded) instead: the loss is then a
distance between random convolutional features, not PIAD's perceptual loss. It exists for tests
and for running the pipeline where the weights are not at hand; its records say
``"vgg_weights": "random (allow_random_vgg)"`` and its numbers must not be reported as PIAD's.

Official setting (``paper`` preset), from the official configs: 32×32 images (MNIST/F-MNIST
resized 28 → 32, bilinear), scaled to [−1, 1]; latent 1×1×32 and all channel lists [32]*4 with a
latent critic [128, 128] for grey images; latent 256, encoder [64, 128, 256, 256], generator
[256, 256, 128, 64], image critic [32, 64, 128, 128], latent critic [1024, 1024] for colour ones;
WGAN-GP gradient penalty 10, norm penalty 1e-3; Adam(β = 0.5, 0.99), weight decay 1e-8, lr 1e-4
for E+G and 5e-4 for the critics; n_dis = 2 critic steps (each on fresh batches) per E+G step;
batch 32; 50 000 iterations for grey and 100 000 for colour images; the gradient-normalising
weight policy (every 100 iterations, the weight of the reconstruction loss for E and for G is
recomputed as the median over layers of EWMA(α=0.05) of std(∇adv)/std(∇rec) over the last 200
measurements).

Departures in every preset: the official perceptual loss also standardises the VGG features by
a mean/variance file shipped with its code (ImageNet statistics of each layer); that file is not
available here, so features are used raw (the relative error divides by the real image's
feature norm anyway). The critics are not saved (scoring does not need them); training cannot be
resumed.

Departures in the scaled-down presets:

- ``quick``: 200 iterations of batch 16 instead of 50 000 / 100 000 of batch 32; the grey-image
  networks (channels 32, latent 32, latent critic [128, 128]) also for colour images. The frozen
  VGG-19 (≈0.3 G multiply-adds per 32×32 image, run on real and reconstructed batches and
  back-propagated) dominates: a few seconds per iteration on 2 CPU cores. Such a short run is a
  smoke run of the pipeline, not a reproduction: PIAD needs a GPU.
- ``tiny`` (tests only): 2 iterations of batch 4, channels 8, latent 8, latent critic [16, 16],
  the weight policy updated at every iteration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.config import Config, check_positive
from ..core.seeding import derive_seed, generator
from ..errors import ConfigError
from ..io.modelfolder import ModelFolder, join_states, split_state
from ..io.preprocess import to_tensor
from ..io.provenance import versions
from ..io.safeload import load_state_checked
from ..nets.piad_nets import Encoder, Generator, LatentDiscriminator
from ..nets.vgg import LAYER_INDEX, VGG19Features, load_vgg19_weights, vgg_state_for
from .base import AnomalyDetector, FitContext, SavedState
from .common import Timer, check_images, resize_to

VGG_ENV = "FGAD_VGG19_WEIGHTS"
VGG_FILE = "vgg.safetensors"

OFFICIAL = {
    1: {"latent_dim": 32, "enc_dims": (32, 32, 32, 32), "gen_dims": (32, 32, 32, 32),
        "image_dis_dims": (32, 32, 32, 32), "latent_dis_dims": (128, 128), "iters": 50_000},
    3: {"latent_dim": 256, "enc_dims": (64, 128, 256, 256), "gen_dims": (256, 256, 128, 64),
        "image_dis_dims": (32, 64, 128, 128), "latent_dis_dims": (1024, 1024), "iters": 100_000},
}
ARCH_KEYS = ("latent_dim", "enc_dims", "gen_dims", "image_dis_dims", "latent_dis_dims", "iters")


@dataclass
class PIADConfig(Config):
    image_size: int = 32  # a power of two; images are resized to it
    latent_dim: int | None = None  # None: the official value for the number of channels
    enc_dims: tuple[int, ...] | None = None
    gen_dims: tuple[int, ...] | None = None
    image_dis_dims: tuple[int, ...] | None = None
    latent_dis_dims: tuple[int, ...] | None = None
    iters: int | None = None
    batch_size: int = 32
    n_dis: int = 2
    lr_enc_gen: float = 1e-4
    lr_dis: float = 5e-4
    betas: tuple[float, ...] = (0.5, 0.99)
    weight_decay: float = 1e-8
    gradient_penalty: float = 10.0
    norm_penalty: float = 1e-3
    grad_norm_policy: bool = True
    grad_norm_every: int = 100
    rec_weight: float = 1.0  # the reconstruction weight when grad_norm_policy is off
    vgg_weights: str | None = None  # None: $FGAD_VGG19_WEIGHTS
    vgg_layer: str = "relu4_2"
    allow_random_vgg: bool = False  # random VGG features: not PIAD's loss (module doc)
    score_batch_size: int = 64
    device: str = "auto"
    seed: int = 0

    def validate(self) -> None:
        check_positive(self, "image_size", "latent_dim", "iters", "batch_size", "n_dis", "lr_enc_gen", "lr_dis",
                       "grad_norm_every", "score_batch_size", "rec_weight")
        check_positive(self, "weight_decay", "gradient_penalty", "norm_penalty", allow_zero=True)
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ConfigError(f"option 'image_size' must be a power of two >= 8, got {self.image_size}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"option 'betas' must be two numbers in [0, 1), got {list(self.betas)}")
        if self.vgg_layer not in LAYER_INDEX or not self.vgg_layer.startswith(("relu", "conv")):
            raise ConfigError(f"option 'vgg_layer' must be a VGG-19 conv or relu layer name, got {self.vgg_layer!r}")
        for k in ("enc_dims", "gen_dims", "image_dis_dims", "latent_dis_dims"):
            v = getattr(self, k)
            if v is not None and (not v or any(d < 1 for d in v)):
                raise ConfigError(f"option {k!r} must be a non-empty list of positive integers, got {list(v)}")


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {"iters": 200, "batch_size": 16, **{k: v for k, v in OFFICIAL[1].items() if k != "iters"}},
    "tiny": {"iters": 2, "batch_size": 4, "latent_dim": 8, "enc_dims": (8, 8, 8, 8), "gen_dims": (8, 8, 8, 8),
             "image_dis_dims": (8, 8, 8, 8), "latent_dis_dims": (16, 16), "grad_norm_every": 1,
             "score_batch_size": 16},
}


def resolve_vgg_source(cfg: PIADConfig) -> str | None:
    """The VGG-19 weights file to use, or None for a random VGG (only with allow_random_vgg)."""
    path = cfg.vgg_weights or os.environ.get(VGG_ENV) or None
    if path is None and not cfg.allow_random_vgg:
        raise ConfigError(f"piad needs ImageNet VGG-19 weights: supply a safetensors file or a torchvision vgg19 "
                          f"state dict (.pth) with option vgg_weights=PATH or the environment variable {VGG_ENV}")
    return path


def ewma(values: list[float], alpha: float) -> np.ndarray:
    """Exponentially weighted moving average started at the first value (the official helper)."""
    out = np.empty(len(values))
    acc = values[0] if values else 0.0
    for i, v in enumerate(values):
        acc = alpha * v + (1.0 - alpha) * acc if i else v
        out[i] = acc
    return out


class GradNormPolicy:
    """The gradient-normalising weight policy: rec-loss weight = median over layers and the last
    200 measurements of EWMA std(∇adv) / EWMA std(∇rec)."""

    def __init__(self, history: int = 200, alpha: float = 0.05):
        self.history, self.alpha = history, alpha
        self.grads: dict[tuple[str, str, str], list[float]] = {}

    def record(self, model: str, loss_name: str, named: list[tuple[str, torch.Tensor]], loss: torch.Tensor) -> None:
        params = [p for _, p in named]
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        for (name, _), g in zip(named, grads):
            if g is None:
                continue
            key = (model, loss_name, name)
            vals = self.grads.setdefault(key, [])
            vals.append(float(g.detach().double().std(unbiased=False)))
            del vals[: -self.history]

    def weight(self, model: str) -> float:
        ratios: list[float] = []
        for (m, loss_name, layer), rec in self.grads.items():
            if m != model or loss_name != "rec" or (m, "adv", layer) not in self.grads:
                continue
            adv = self.grads[(m, "adv", layer)]
            n = min(len(adv), len(rec))
            r = ewma(adv[-n:], self.alpha) / np.maximum(ewma(rec[-n:], self.alpha), 1e-30)
            ratios.extend(r[-self.history:])
        return float(np.median(ratios)) if ratios else 1.0


class PIAD(AnomalyDetector):
    """PIAD one-class detector; ``score`` returns the relative perceptual L1 between an image and
    its reconstruction G(E(x)): higher = more anomalous.

    Args:
        preset: ``"paper"`` (official), ``"quick"`` or ``"tiny"`` (scaled down; see the module doc).
        seed: seeds initialisation, batches and noise.
        **options: any :class:`PIADConfig` field, e.g. ``vgg_weights="vgg19.safetensors"``.
    """

    name = "piad"
    config_class = PIADConfig
    presets = PRESETS
    file_format = "fgad-piad"

    def __init__(self, preset: str = "quick", seed: int = 0, **options: Any):
        super().__init__(preset, seed, **options)
        self.vgg_source = resolve_vgg_source(self.config)  # fails early without weights

    def _setup(self, config: PIADConfig, preset: str) -> None:
        super()._setup(config, preset)
        self.vgg_source: str | None = None  # the VGG-19 weights file; None: random (allow_random_vgg)
        self.arch: dict[str, Any] = {}
        self.enc: Encoder | None = None
        self.gen: Generator | None = None
        self.vgg: VGG19Features | None = None

    @property
    def is_fitted(self) -> bool:
        return self.enc is not None and self.gen is not None and self.vgg is not None

    # ----------------------------------------------------------------------------- building
    def _resolve_arch(self, channels: int) -> dict[str, Any]:
        cfg = self.config
        official = OFFICIAL[channels]
        arch = {k: getattr(cfg, k) if getattr(cfg, k) is not None else official[k] for k in ARCH_KEYS}
        need = int(np.log2(cfg.image_size * 2 / 4))
        for k in ("enc_dims", "gen_dims", "image_dis_dims"):
            if len(arch[k]) != need:
                raise ConfigError(f"piad: {cfg.image_size}x{cfg.image_size} images need {need} channel sizes in "
                                  f"{k!r}, got {list(arch[k])}")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in arch.items()}

    def _build_vgg(self, state: dict[str, torch.Tensor] | None) -> VGG19Features:
        vgg = VGG19Features(self.config.vgg_layer)
        if state is not None:
            vgg.load_state_dict(state, strict=True)
        for p in vgg.parameters():
            p.requires_grad_(False)
        return vgg.eval()

    def load_vgg(self) -> VGG19Features:
        cfg = self.config
        if self.vgg_source is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(cfg.seed, 99))
                return self._build_vgg(None)
        vgg = VGG19Features(cfg.vgg_layer)
        state = vgg_state_for(vgg, load_vgg19_weights(self.vgg_source), str(self.vgg_source))
        return self._build_vgg(state)

    def network_inputs(self, x_np: np.ndarray, device: torch.device) -> torch.Tensor:
        return resize_to(to_tensor(x_np, None, device), self.config.image_size)

    def perceptual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Relative perceptual L1 per image between real ``x`` and ``y`` (both in [−1, 1])."""
        fx = self.vgg(self.vgg.normalise((x + 1.0) * 0.5))
        fy = self.vgg(self.vgg.normalise((y + 1.0) * 0.5))
        norm = fx.abs().mean(dim=(1, 2, 3)).detach().clamp_min(1e-12)
        return (fx - fy).abs().mean(dim=(1, 2, 3)) / norm

    # ----------------------------------------------------------------------------- training
    def fit(self, images: Any, context: FitContext | None = None) -> "PIAD":
        """Train on normal images (uint8 N×H×W[×C])."""
        from tqdm.auto import tqdm

        x_np, context = self.start_fit(images, context)
        progress, cfg, device = context.progress, self.config, self.device
        ch = self.input_shape[2]
        self.arch = a = self._resolve_arch(ch)
        self.vgg_source = resolve_vgg_source(self.config)  # again: from_config() skips the constructor's check
        self.vgg = self.load_vgg().to(device)
        self.enc = Encoder(cfg.image_size, ch, a["latent_dim"], a["enc_dims"]).to(device)
        self.gen = Generator(cfg.image_size, ch, a["latent_dim"], a["gen_dims"]).to(device)
        image_dis = Encoder(cfg.image_size, ch, 1, a["image_dis_dims"], minibatch_std=True).to(device)
        latent_dis = LatentDiscriminator(a["latent_dim"], a["latent_dis_dims"]).to(device)
        adam = dict(betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        opt_img = torch.optim.Adam(image_dis.parameters(), lr=cfg.lr_dis, **adam)
        opt_lat = torch.optim.Adam(latent_dis.parameters(), lr=cfg.lr_dis, **adam)
        eg_params = list(self.enc.parameters()) + list(self.gen.parameters())
        opt_eg = torch.optim.Adam(eg_params, lr=cfg.lr_enc_gen, **adam)
        n_enc = len(list(self.enc.parameters()))
        x_all = self.network_inputs(x_np, device)
        batches = _batch_stream(len(x_all), cfg.batch_size, cfg.seed)
        policy = GradNormPolicy()
        w_enc = w_gen = 1.0 if cfg.grad_norm_policy else cfg.rec_weight
        named = {"enc": [(n, p) for n, p in self.enc.named_parameters() if n.endswith("weight")],
                 "gen": [(n, p) for n, p in self.gen.named_parameters() if n.endswith("weight")]}
        latent_shape = (a["latent_dim"], 1, 1)
        last: dict[str, float] = {}
        with Timer() as timer:
            for it in tqdm(range(1, a["iters"] + 1), disable=not progress, desc="piad", unit="iter"):
                for _ in range(cfg.n_dis):
                    z = torch.randn(cfg.batch_size, *latent_shape, device=device)
                    x = x_all[next(batches).to(device)]
                    with torch.no_grad():
                        fake_x, fake_z = self.gen(z), self.enc(x)
                    last["image_dis"] = self._critic_step(image_dis, opt_img, x, fake_x)
                    last["latent_dis"] = self._critic_step(latent_dis, opt_lat, z, fake_z)
                z = torch.randn(cfg.batch_size, *latent_shape, device=device)
                x = x_all[next(batches).to(device)]
                fake_z = self.enc(x)
                image_adv = -image_dis(self.gen(z)).mean()
                latent_adv = -latent_dis(fake_z).mean()
                rec = self.perceptual(x, self.gen(fake_z)).mean()
                if cfg.grad_norm_policy and it % cfg.grad_norm_every == 0:
                    policy.record("gen", "adv", named["gen"], image_adv)
                    policy.record("gen", "rec", named["gen"], rec)
                    policy.record("enc", "adv", named["enc"], latent_adv)
                    policy.record("enc", "rec", named["enc"], rec)
                    w_enc, w_gen = policy.weight("enc"), policy.weight("gen")
                g_rec = torch.autograd.grad(rec, eg_params, retain_graph=True, allow_unused=True)
                g_adv = torch.autograd.grad(image_adv + latent_adv, eg_params, allow_unused=True)
                for i, (p, gr, ga) in enumerate(zip(eg_params, g_rec, g_adv)):
                    w = w_enc if i < n_enc else w_gen
                    g = torch.zeros_like(p) if gr is None else gr * w
                    p.grad = g if ga is None else g + ga
                opt_eg.step()
                last.update(rec_loss=rec.item(), image_adv_loss=image_adv.item(), latent_adv_loss=latent_adv.item())
        self.enc.eval()
        self.gen.eval()
        self.info = {"n_train": int(len(x_np)), "iters": a["iters"], "fit_s": timer.seconds, "device": str(device),
                     "final_losses": last, "rec_weight_enc": float(w_enc), "rec_weight_gen": float(w_gen),
                     "vgg_weights": str(self.vgg_source) if self.vgg_source else "random (allow_random_vgg)",
                     "arch": self.arch, "versions": versions()}
        return self

    def _critic_step(self, dis: nn.Module, opt: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor) -> float:
        """One WGAN-GP critic update: −(D(real) − D(fake)) + ε(D(real)² + D(fake)²) + λ·GP."""
        cfg = self.config
        d_real, d_fake = dis(real), dis(fake)
        wass = d_real.mean() - d_fake.mean()
        norm = (d_real ** 2).mean() + (d_fake ** 2).mean()
        alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
        hat = (alpha * real + (1.0 - alpha) * fake).detach().requires_grad_(True)
        grad = torch.autograd.grad(dis(hat).sum(), hat, create_graph=True)[0]
        gp = ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()
        loss = -wass + cfg.norm_penalty * norm + cfg.gradient_penalty * gp
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.item())

    # ----------------------------------------------------------------------------- scoring
    @torch.inference_mode()
    def score(self, images: Any) -> np.ndarray:
        """Anomaly scores, relative perceptual L1 of x and G(E(x)): higher = more anomalous."""
        x_np = check_images(images, self.input_shape if self.is_fitted else None)
        device, bs = self.device, self.config.score_batch_size
        for m in (self.enc, self.gen, self.vgg):
            m.to(device).eval()
        out = []
        for i in range(0, len(x_np), bs):
            x = self.network_inputs(x_np[i : i + bs], device)
            out.append(self.perceptual(x, self.gen(self.enc(x))).double().cpu().numpy())
        return np.concatenate(out)

    # ----------------------------------------------------------------------------- files
    def fitted_state(self) -> SavedState:
        """Encoder and generator (model.safetensors) and the VGG layers used (vgg.safetensors), so
        that a saved model needs no VGG weights file; the critics are not saved."""
        return SavedState(join_states(enc=self.enc, gen=self.gen), {"arch": self.arch, "vgg_source": self.vgg_source},
                          {VGG_FILE: dict(self.vgg.state_dict())})

    def restore_state(self, folder: ModelFolder) -> None:
        cfg, ch = self.config, self.input_shape[2]
        self.arch = arch = dict(folder.get("arch"))
        self.vgg_source = folder.meta.get("vgg_source")
        enc = Encoder(cfg.image_size, ch, int(arch["latent_dim"]), tuple(arch["enc_dims"]))
        gen = Generator(cfg.image_size, ch, int(arch["latent_dim"]), tuple(arch["gen_dims"]))
        tensors = folder.tensors()
        load_state_checked(enc, split_state(tensors, "enc"), folder.path)
        load_state_checked(gen, split_state(tensors, "gen"), folder.path)
        vgg = VGG19Features(cfg.vgg_layer)
        load_state_checked(vgg, folder.tensors(VGG_FILE), folder.path / VGG_FILE)
        for p in vgg.parameters():
            p.requires_grad_(False)
        self.enc, self.gen, self.vgg = (m.eval().to(self.device) for m in (enc, gen, vgg))


def _batch_stream(n: int, batch_size: int, seed: int):
    """Endless batches of indices: successive seeded permutations of 0..n-1, cut in full batches."""
    buf = torch.empty(0, dtype=torch.long)
    epoch = 0
    while True:
        while len(buf) < batch_size:
            buf = torch.cat([buf, torch.randperm(n, generator=generator(seed, 1, epoch))])
            epoch += 1
        yield buf[:batch_size]
        buf = buf[batch_size:]
