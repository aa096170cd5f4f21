"""The simplified jigsaw task of the paper (section 3.2, Fig. 3).

The image is split into an n_h × n_w grid of cells. From every cell a tile smaller than the cell
(by ``margin`` pixels) is cut, at a random offset inside the cell during training (so tile edges
do not line up: no trivial solution from continuous borders) and at the centred offset at test.
For each of k fixed permutations (identity included) the tiles are placed into the permuted
cells, at the centred position; the gaps are 0 (the mid-grey of the [-1, 1] pixel range). The
output has the size of the input. The class of a view is the index of its permutation.

Permutation p maps target cell j to source cell ``permutations[p][j]``.

The permutations are chosen once from the seed, mutually distant (the paper's, ``"distant"``) or
uniformly at random (``"random"``: with many of them some differ in a few cells only, so one
tile no longer gives the class away); either way they are saved in :meth:`JigsawTask.state`.
:meth:`JigsawTask.test_views` gives test views with tiles cut at seeded random offsets (draws
1, 2, ...) beside the centred ones (draw 0), for scores averaged over draws.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..core.seeding import generator as seeded_generator
from ..errors import ConfigError, InputError
from .base import Task

PERMUTATION_CHOICES = ("distant", "random")

# Seed stream of the test-time offset draws (training steps use stream 2, see core.training).
TEST_DRAW_STREAM = 21


def choose_permutations(n_cells: int, k: int, seed: int, n_candidates: int = 2000) -> list[list[int]]:
    """Identity plus k−1 permutations drawn once from ``seed``, chosen to be mutually distant.

    Greedy max-min Hamming selection (Noroozi & Favaro's rule) over random candidates: each new
    permutation is the candidate whose smallest Hamming distance to those already chosen is
    largest, so no two classes differ by a swap of two tiles only.
    """
    if k < 2:
        raise ConfigError(f"jigsaw needs k >= 2 permutations, got {k}")
    if n_cells < 2:
        raise ConfigError(f"jigsaw needs at least 2 cells, got {n_cells}")
    rng = np.random.default_rng(seed)
    candidates = np.stack([rng.permutation(n_cells) for _ in range(n_candidates)])
    chosen = [np.arange(n_cells)]
    while len(chosen) < k:
        dist = np.stack([(candidates != c).sum(1) for c in chosen]).min(0)
        best = int(np.argmax(dist))
        if dist[best] == 0:
            raise ConfigError(f"cannot choose {k} distinct permutations of {n_cells} cells")
        chosen.append(candidates[best])
    return [[int(v) for v in p] for p in chosen]


def random_permutations(n_cells: int, k: int, seed: int) -> list[list[int]]:
    """Identity plus k−1 distinct other permutations drawn uniformly at random from ``seed``.

    Unlike :func:`choose_permutations`, two classes may differ in as few as two cells.
    """
    if k < 2:
        raise ConfigError(f"jigsaw needs k >= 2 permutations, got {k}")
    if n_cells < 2:
        raise ConfigError(f"jigsaw needs at least 2 cells, got {n_cells}")
    if k > math.factorial(n_cells):
        raise ConfigError(f"cannot choose {k} distinct permutations of {n_cells} cells")
    rng = np.random.default_rng(seed)
    chosen = [tuple(range(n_cells))]
    seen = set(chosen)
    while len(chosen) < k:  # rejection of repeats: k <= n_cells! keeps it finite
        p = tuple(int(v) for v in rng.permutation(n_cells))
        if p not in seen:
            seen.add(p)
            chosen.append(p)
    return [list(p) for p in chosen]


class JigsawTask(Task):
    """k permutations of an n_h × n_w grid of tiles; one head of k classes.

    ``choice``: how the permutations are drawn from ``seed`` when ``permutations`` is not given
    (``"distant"``: :func:`choose_permutations`, the paper's; ``"random"``:
    :func:`random_permutations`). ``seed`` also seeds the test-time offset draws.
    """

    name = "jigsaw"

    def __init__(self, grid: tuple[int, int] = (3, 3), k: int = 3, margin: int = 2, seed: int = 0,
                 permutations: list[list[int]] | None = None, choice: str = "distant"):
        self.grid = (int(grid[0]), int(grid[1]))
        self.margin = int(margin)
        self.seed = int(seed)
        if self.margin < 0:
            raise ConfigError(f"jigsaw margin must be >= 0, got {margin}")
        if choice not in PERMUTATION_CHOICES:
            raise ConfigError(f"jigsaw permutation choice must be one of {', '.join(PERMUTATION_CHOICES)}, "
                              f"got {choice!r}")
        n_cells = self.grid[0] * self.grid[1]
        if permutations is None:
            draw = choose_permutations if choice == "distant" else random_permutations
            permutations = draw(n_cells, int(k), self.seed)
        self.permutations = [list(map(int, p)) for p in permutations]
        if len(self.permutations) != int(k) or any(sorted(p) != list(range(n_cells)) for p in self.permutations):
            raise ConfigError(f"jigsaw permutations must be {k} permutations of {n_cells} cells")
        self.head_sizes = (len(self.permutations),)

    def labels(self):
        return torch.arange(len(self.permutations), dtype=torch.long)[:, None]

    def geometry(self, h: int, w: int) -> tuple[list[int], list[int], int, int]:
        """Cell origins (rows, columns) and tile size for an h×w image; the grid is centred."""
        nh, nw = self.grid
        ch, cw = h // nh, w // nw
        th, tw = ch - self.margin, cw - self.margin
        if th < 1 or tw < 1:
            raise InputError(f"images of {h}x{w} are too small for a {nh}x{nw} jigsaw with margin {self.margin}")
        oy, ox = (h - nh * ch) // 2, (w - nw * cw) // 2
        return [oy + i * ch for i in range(nh)], [ox + j * cw for j in range(nw)], th, tw

    def draw_offsets(self, batch: int, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """B×n_cells×2 offsets (row, column) of each tile inside its source cell."""
        n_cells = self.grid[0] * self.grid[1]
        if train:
            return torch.randint(0, self.margin + 1, (batch, n_cells, 2), generator=generator)
        return torch.full((batch, n_cells, 2), self.margin // 2, dtype=torch.long)

    def draw_offsets_at_test(self, batch: int, draw: int) -> torch.Tensor:
        """B×n_cells×2 offsets of test draw ``draw``: 0 = centred (the paper's test views); d >= 1 =
        offsets drawn from (seed, d), the same for every image, so that an image's views depend
        neither on the batch it is scored in nor on its place there."""
        if draw < 0:
            raise ValueError(f"draw must be >= 0, got {draw}")
        if draw == 0:
            return self.draw_offsets(batch, train=False)
        n_cells = self.grid[0] * self.grid[1]
        one = torch.randint(0, self.margin + 1, (1, n_cells, 2),
                            generator=seeded_generator(self.seed, TEST_DRAW_STREAM, draw))
        return one.repeat(batch, 1, 1)

    def test_views(self, x, draw=0):
        offsets = self.draw_offsets_at_test(x.shape[0], draw)
        return self.views(x, offsets=offsets)

    def views(self, x, *, train=False, generator=None, offsets: torch.Tensor | None = None):
        b, c, h, w = x.shape
        rows0, cols0, th, tw = self.geometry(h, w)
        if offsets is None:
            offsets = self.draw_offsets(b, train, generator)
        if offsets.device != x.device:
            # Drawn on the CPU so that a seed gives the same tiles on every device; on CUDA copied
            # from pinned memory without blocking, so the host does not wait for the device.
            cuda = x.device.type == "cuda"
            offsets = (offsets.pin_memory() if cuda else offsets).to(x.device, non_blocking=cuda)
        nw = self.grid[1]
        batch_idx = torch.arange(b, device=x.device)[:, None, None]
        ar_h, ar_w = torch.arange(th, device=x.device), torch.arange(tw, device=x.device)
        tiles = []
        for cell in range(self.grid[0] * nw):  # a loop over cells, each a whole-batch gather
            r = rows0[cell // nw] + offsets[:, cell, 0:1] + ar_h  # B×th
            q = cols0[cell % nw] + offsets[:, cell, 1:2] + ar_w  # B×tw
            tiles.append(x[batch_idx, :, r[:, :, None], q[:, None, :]].permute(0, 3, 1, 2))  # B×C×th×tw
        out = x.new_zeros(b, len(self.permutations), c, h, w)
        centre = self.margin // 2
        for p, perm in enumerate(self.permutations):
            for cell, source in enumerate(perm):
                y0, x0 = rows0[cell // nw] + centre, cols0[cell % nw] + centre
                out[:, p, :, y0 : y0 + th, x0 : x0 + tw] = tiles[source]
        return out

    def state(self):
        return {"grid": list(self.grid), "k": len(self.permutations), "margin": self.margin,
                "permutations": self.permutations, "seed": self.seed}
