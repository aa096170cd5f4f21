"""A look at a scored image set: one self-contained HTML page of the images that were flagged, and why.

>>> from fgad.tools.gallery import write_gallery
>>> write_gallery(det, images, ids, det.score(images), "gallery.html", top=24, bottom=12)

The page holds everything it shows (images as base64 PNG ``data:`` URIs, inline CSS, no script,
no network): it can be mailed or archived as one file. It shows

- the summary: how many images, the score orientation (anomaly score: higher = more anomalous)
  and a histogram of all the scores;
- the decision at the model's calibrated threshold (``det.decision``, see
  :mod:`fgad.tools.decision`: anomalous when the anomaly score >= threshold), with counts;
  without one, a line saying how to calibrate;
- the ``top`` most and ``bottom`` least anomalous images as thumbnails with their score, its
  normal percentile (the share of held-out normal images that score lower,
  :meth:`fgad.Detector.normal_percentile`; models with held-out normal images only), rank
  ("#1 of 2,000 most anomalous") and id; flagged images are marked;
- for each of them, the figure and breakdown of ``fgad explain`` (the score's components, the
  per-task breakdown, the jigsaw tile heat map), from :mod:`fgad.tools.explain`'s public functions.

Only the shown images are encoded and explained, so the page costs the same for 50 or 50,000
images. Every id and text is HTML-escaped. Machine-readable attributes on each card:
``data-id``, ``data-score`` (the anomaly score, full precision), ``data-rank`` (1 = most
anomalous), ``data-percentile`` (the normal percentile, 0–100, only when the model has one),
``data-flagged`` (``1``/``0``, only with a decision).
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, OutputError
from ..io.fileio import atomic_write_text
from ..io.preprocess import as_image_array
from .explain import PERCENTILE_RULE

__all__ = ["GALLERY_MARKER", "build_gallery", "check_gallery_target", "is_gallery", "write_gallery"]

#: The tag that marks a page as an fgad gallery: only such a file is overwritten without asking.
GALLERY_MARKER = '<meta name="generator" content="fgad gallery">'

_THUMB_MAX = 128  # thumbnails larger than this (pixels) are downscaled before encoding

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#1b1b1b;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.muted{color:#666}
.decision{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;display:inline-block}
.decision table{border-collapse:collapse;margin-top:6px}
.decision td,.decision th{padding:2px 12px 2px 0;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.card{margin:0;width:140px;background:#fff;border:1px solid #ccc;border-radius:6px;padding:6px;font-size:12px}
.card.flagged{border:2px solid #c62828;padding:5px}
.card img{width:128px;height:128px;object-fit:contain;image-rendering:pixelated;background:#eee;display:block}
.card .id{font-family:ui-monospace,monospace;word-break:break-all;display:block}
.badge{display:inline-block;background:#c62828;color:#fff;border-radius:3px;padding:0 4px;font-size:11px}
.badge.ok{background:#2e7d32}
details{background:#fff;border:1px solid #ddd;border-radius:6px;margin:8px 0;padding:6px 10px}
summary{cursor:pointer;font-weight:600}details img{max-width:100%}
pre{font-size:12px;overflow-x:auto;background:#f4f4f4;padding:6px}
table.cells{border-collapse:collapse;font-family:ui-monospace,monospace;font-size:12px}
table.cells td{border:1px solid #ccc;padding:2px 6px;text-align:right}table.cells td.max{background:#ffe082}
svg{background:#fff;border:1px solid #ddd;border-radius:6px}
"""


# ----------------------------------------------------------------------------------- output target
def is_gallery(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a page written by :func:`write_gallery` (its head carries the marker)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2048)
    except OSError:
        return False
    return GALLERY_MARKER.encode() in head


def check_gallery_target(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse an output path that is a folder, or an existing file that is not an fgad gallery.

    Raises :class:`~fgad.errors.OutputError`; ``overwrite=True`` allows replacing any file. (The
    ``fgad gallery`` command is stricter, as every command: ``fgad.cli.common.check_output_file``.)
    """
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"cannot write {p}: it is a folder")
    if p.exists() and not overwrite and not is_gallery(p):
        raise OutputError(f"{p} exists and is not an fgad gallery; choose another path or pass overwrite=True")


# ----------------------------------------------------------------------------------- pieces
def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _thumbnail_png(img: np.ndarray) -> bytes:
    """PNG bytes of one uint8 H×W×C image, downscaled to at most ``_THUMB_MAX`` pixels a side."""
    from PIL import Image

    pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    if max(pil.size) > _THUMB_MAX:
        pil.thumbnail((_THUMB_MAX, _THUMB_MAX), Image.BILINEAR)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _histogram_svg(scores: np.ndarray, threshold: float | None, bins: int = 40) -> str:
    """An inline SVG histogram of the anomaly scores, with the threshold as a red line."""
    lo, hi = float(scores.min()), float(scores.max())
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(scores, bins=bins, range=(lo, hi))
    w, h, pad = 640, 150, 28
    bw = (w - 2 * pad) / bins
    top = max(int(counts.max()), 1)
    parts = [(f'<svg width="{w}" height="{h + 30}" viewBox="0 0 {w} {h + 30}" role="img" '
              f'aria-label="histogram of anomaly scores">')]
    for i, c in enumerate(counts):
        bh = (h - 10) * c / top
        parts.append(f'<rect x="{pad + i * bw:.1f}" y="{h - bh:.1f}" width="{max(bw - 1, 1):.1f}" '
                     f'height="{bh:.1f}" fill="#5c6bc0"><title>{int(c)} image(s), scores '
                     f'{edges[i]:.4g} to {edges[i + 1]:.4g}</title></rect>')
    parts.append(f'<line x1="{pad}" y1="{h}" x2="{w - pad}" y2="{h}" stroke="#444"/>')
    parts.append(f'<text x="{pad}" y="{h + 16}" font-size="11">{lo:.4f}</text>')
    parts.append(f'<text x="{w - pad}" y="{h + 16}" font-size="11" text-anchor="end">{hi:.4f}</text>')
    parts.append(f'<text x="{w / 2}" y="{h + 28}" font-size="11" text-anchor="middle">anomaly score '
                 f'(higher = more anomalous)</text>')
    if threshold is not None:
        tx = pad + (threshold - lo) / (hi - lo) * (w - 2 * pad)
        parts.append(f'<line x1="{tx:.1f}" y1="4" x2="{tx:.1f}" y2="{h}" stroke="#c62828" stroke-width="2"/>')
        left = tx > w / 2  # label on the side with room
        parts.append(f'<text x="{tx - 4 if left else tx + 4:.1f}" y="14" font-size="11" fill="#c62828" '
                     f'text-anchor="{"end" if left else "start"}">threshold {threshold:.6g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _decision_html(decision: dict[str, Any] | None, flagged: np.ndarray | None, n: int) -> str:
    if decision is None:
        return ('<p class="decision">This model has no decision threshold: the images below are ranked only. '
                'Set one with <code>fgad calibrate MODEL HELD_OUT_NORMAL_IMAGES</code>.</p>')
    e = html.escape
    k = int(flagged.sum())
    rule, target = decision.get("rule"), decision.get("target")
    how = f"rule {rule}" + (f", target {target:g}" if isinstance(target, (int, float)) else "")
    calib = []
    if isinstance(decision.get("bpcer"), (int, float)) and decision.get("n_normal"):
        calib.append(f"{100 * decision['bpcer']:.2f}% of {decision['n_normal']:,} normal calibration image(s) rejected")
    if isinstance(decision.get("apcer"), (int, float)) and decision.get("n_anomalous"):
        calib.append(f"{100 * decision['apcer']:.2f}% of {decision['n_anomalous']:,} anomalous ones missed")
    return (f'<div class="decision"><b>Decision</b>: anomalous when the anomaly score &ge; threshold '
            f'<b>{decision["threshold"]:.6g}</b> <span class="muted">({e(how)}'
            f'{"; " + e("; ".join(calib)) if calib else ""})</span>'
            f'<table><tr><th><span class="badge">anomalous</span></th><td id="n-anomalous">{k:,}</td>'
            f'<td>{100 * k / n:.1f}%</td></tr>'
            f'<tr><th><span class="badge ok">normal</span></th><td id="n-normal">{n - k:,}</td>'
            f'<td>{100 * (n - k) / n:.1f}%</td></tr></table></div>')


def _card(img: np.ndarray, ident: str, score: float, rank: int, n: int, side: str, shown_rank: int,
          flagged: bool | None, percentile: float | None = None) -> str:
    """One thumbnail: image, readable rank, score and its normal percentile, id; links to its explanation."""
    e = html.escape
    cls = "card flagged" if flagged else "card"
    flag_attr = "" if flagged is None else f' data-flagged="{int(flagged)}"'
    pct_attr, pct_line = "", ""
    if percentile is not None:
        pct_attr = f' data-percentile="{percentile!r}"'
        pct_line = (f'<br><span title="normal percentile: {e(PERCENTILE_RULE)}">above '
                    f'<b>{percentile:.1f}%</b> of normals</span>')
    badge = "" if not flagged else ' <span class="badge">anomalous</span>'
    return (f'<figure class="{cls}" data-id="{e(ident)}" data-score="{score!r}" data-rank="{rank}"{pct_attr}'
            f'{flag_attr}><a href="#why-{rank}"><img src="{_png_data_uri(_thumbnail_png(img))}" alt="{e(ident)}"></a>'
            f'<figcaption><b>#{shown_rank:,}</b> of {n:,} {side} anomalous{badge}<br>'
            f'score <b>{score:.4f}</b>{pct_line}<span class="id" title="{e(ident)}">{e(ident)}</span></figcaption>'
            '</figure>')


def _cells_html(heat: dict[str, Any] | None) -> str:
    if heat is None:
        return '<p class="muted">No jigsaw task in this model: no heat map.</p>'
    r_max, c_max = heat["argmax_cell"]
    rows = []
    for r, row in enumerate(heat["cells"]):
        tds = "".join(f'<td class="max">{v:+.4f}</td>' if (r, c) == (r_max, c_max) else f"<td>{v:+.4f}</td>"
                      for c, v in enumerate(row))
        rows.append(f"<tr>{tds}</tr>")
    return ('<p>Jigsaw tile heat map (higher = the tile looks more anomalous; most anomalous cell '
            f'highlighted: row {r_max}, column {c_max}):</p><table class="cells">{"".join(rows)}</table>')


def _explanation_html(det, img: np.ndarray, ident: str, score: float, rank: int, n: int,
                      flagged: bool | None, fusion: str, fill: str, percentile: float | None = None) -> str:
    """The ``fgad explain`` figure and breakdown of one image, from fgad.tools.explain."""
    from .explain import explain_image, format_breakdown, render_explanation

    e = html.escape
    expl = explain_image(det, img, fill=fill, fusion=fusion)  # its components, as the detector scores
    png = render_explanation(img, expl, title=f"{ident}: anomaly score {score:.3f} (higher = more anomalous)")
    verdict = {None: "", True: " &mdash; <span class=\"badge\">anomalous</span>",
               False: " &mdash; <span class=\"badge ok\">normal</span>"}[flagged]
    pct = "" if percentile is None else f" (normal percentile {percentile:.1f})"
    return (f'<details open id="why-{rank}"><summary>#{rank:,} of {n:,} most anomalous: '
            f'<code>{e(ident)}</code>, score {score:.4f}{pct}{verdict}</summary>'
            f'<img src="{_png_data_uri(png)}" alt="explanation of {e(ident)}">'
            f'{_cells_html(expl["heatmap"])}<pre>{e(format_breakdown(expl))}</pre></details>')


# ----------------------------------------------------------------------------------- page
def build_gallery(det, images: Any, ids: Sequence[str], scores: Any = None, *, top: int = 24, bottom: int = 12,
                  title: str | None = None, fusion: str | None = None, fill: str = "mean",
                  explain: bool = True, progress: bool = False) -> tuple[str, dict[str, Any]]:
    """The gallery page as a string, and a summary dict.

    Args:
        det: a fitted :class:`~fgad.Detector`.
        images: the scored images (uint8 N×H×W or N×H×W×C, the model's size and channels).
        ids: one id (file name, index...) per image, shown escaped.
        scores: anomaly scores, higher = more anomalous, one per image; ``None``: ``det.score``
            (the detector's own components and fusion). Pass scores computed with ``fusion`` (by
            default the decision's, else the model's).
        top, bottom: how many of the most / least anomalous images to show and explain.
        fusion: fusion of the scores and breakdowns (default: the decision's, else the model's;
            the normal percentile is shown only with the model's own fusion).
        fill: how the heat map hides a jigsaw tile (``"mean"`` or ``"zero"``, as ``fgad explain``).
        explain: add the ``fgad explain`` figure of every shown image.

    Returns ``(page, summary)``, summary: ``n``, ``top`` / ``bottom`` (the ids shown), ``fusion``,
    ``threshold`` and ``n_anomalous`` (``None`` without a decision), ``normal_percentile`` (per
    image, 0–100, or ``None`` for a model without held-out normal images).
    """
    x = as_image_array(images, "images for the gallery")
    ids = [str(i) for i in ids]
    n = x.shape[0]
    if len(ids) != n:
        raise InputError(f"gallery: {n} images but {len(ids)} ids")
    decision = getattr(det, "decision", None)
    fusion = fusion or (decision or {}).get("fusion") or det.config.score_fusion
    s = np.asarray(det.score(x, fusion=fusion) if scores is None else scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != n:
        raise InputError(f"gallery: {n} images but {s.shape[0]} scores")
    if not np.isfinite(s).all():
        raise InputError(f"gallery: {int((~np.isfinite(s)).sum())} score(s) are NaN or infinite")
    for name, value in (("top", top), ("bottom", bottom)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InputError(f"gallery: {name} must be a whole number >= 0, got {value!r}")
    # Held-out normals' scores were fused with the model's fusion: no percentile for another one.
    pct = det.normal_percentile(s) if fusion == det.config.score_fusion else None
    flagged = None
    if decision is not None:
        from .decision import decide

        flagged = decide(s, decision).astype(bool)
    order = np.argsort(-s, kind="stable")  # rank 1 = most anomalous; ties keep the input order
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    n_top = min(int(top), n)
    n_bottom = min(int(bottom), n - n_top)  # no image shown twice when the sets would overlap
    top_idx = order[:n_top]
    bottom_idx = order[::-1][:n_bottom]

    def flag(i: int) -> bool | None:
        return None if flagged is None else bool(flagged[i])

    def percentile(i: int) -> float | None:
        return None if pct is None else float(pct[i])

    e = html.escape
    title = title or "fgad gallery"
    fusion_note = f"fusion {fusion}"
    pct_note = ("" if pct is None else f" Beside each score, its normal percentile: the {PERCENTILE_RULE} "
                "(held out of training).")
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', GALLERY_MARKER,
           '<meta name="viewport" content="width=device-width,initial-scale=1">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{e(title)}</h1>",
           (f'<p class="muted">{n:,} image(s) scored. Anomaly score: higher = more anomalous ({e(fusion_note)}). '
            f"Scores from {s.min():.4f} to {s.max():.4f}, median {np.median(s):.4f}.{e(pct_note)}</p>"),
           _decision_html(decision, flagged, n),
           "<h2>All scores</h2>", _histogram_svg(s, None if decision is None else float(decision["threshold"]))]
    if flagged is not None and int(flagged.sum()) > n_top:
        out.append(f'<p class="muted">{int(flagged.sum()):,} images are flagged; the {n_top:,} most anomalous '
                   "are shown. <code>fgad score MODEL IMAGES --decide</code> lists them all.</p>")
    out.append(f'<h2 id="most">Most anomalous ({n_top:,} of {n:,})</h2><div class="grid">')
    out += [_card(x[i], ids[i], float(s[i]), int(rank[i]), n, "most", int(rank[i]), flag(i), percentile(i))
            for i in top_idx]
    out.append("</div>")
    if n_bottom:
        out.append(f'<h2 id="least">Least anomalous ({n_bottom:,} of {n:,})</h2><div class="grid">')
        out += [_card(x[i], ids[i], float(s[i]), int(rank[i]), n, "least", k + 1, flag(i), percentile(i))
                for k, i in enumerate(bottom_idx)]
        out.append("</div>")
    if explain and (n_top or n_bottom):
        from tqdm.auto import tqdm

        out.append('<h2 id="why">Why: the score\'s components, per-task breakdown and jigsaw heat map</h2>'
                   '<p class="muted">The figures of <code>fgad explain</code>. Table: each component of the '
                   "score, raw and as fused. Bars: how well the network recognised each transformation "
                   "(mean probability of the true class; low = unfamiliar). Heat map: red tiles look "
                   "anomalous.</p>")
        shown = list(top_idx) + list(bottom_idx)
        for i in tqdm(shown, disable=not progress, desc="explain", unit="image"):
            out.append(_explanation_html(det, x[i], ids[i], float(s[i]), int(rank[i]), n, flag(i), fusion, fill,
                                         percentile(i)))
    out.append('<p class="muted">Written by fgad gallery.</p></body></html>\n')
    summary = {"n": n, "top": [ids[i] for i in top_idx], "bottom": [ids[i] for i in bottom_idx], "fusion": fusion,
               "threshold": None if decision is None else float(decision["threshold"]),
               "n_anomalous": None if flagged is None else int(flagged.sum()),
               "normal_percentile": None if pct is None else pct.tolist()}
    return "\n".join(out), summary


def write_gallery(det, images: Any, ids: Sequence[str], scores: Any, path: str | os.PathLike, *,
                  top: int = 24, bottom: int = 12, overwrite: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Write the page of :func:`build_gallery` to ``path`` atomically; return its summary.

    ``scores``: anomaly scores (higher = more anomalous) or ``None`` to score here. An existing
    file that is not an fgad gallery is kept (:class:`~fgad.errors.OutputError`) unless
    ``overwrite=True``. Other keyword arguments go to :func:`build_gallery`.
    """
    check_gallery_target(path, overwrite)  # before the work, and again just before replacing
    page, summary = build_gallery(det, images, ids, scores, top=top, bottom=bottom, **kwargs)
    check_gallery_target(path, overwrite)
    atomic_write_text(path, page)
    summary["path"] = str(path)
    return summary
