"""Font-style anomalies in the spirit of FounderType-200: one class per font face.

Every face renders every character of a character set; the normal class is one face, the
anomalies are the same characters in other faces (style anomalies). Folder layout (``<root>``;
any depth, sorted by path)::

    <root>/
    ├── SomeFont-Regular.ttf
    ├── Other.otf
    └── collection.ttc                  (every face of a collection is its own class)

With no ``root``, the faces are the ones matplotlib installs (``matplotlib/mpl-data/fonts/ttf``),
so the set works offline on any install: :data:`DEFAULT_FACES`, 16 faces (DejaVu Sans, Sans Mono
and Serif in four styles each, STIXGeneral in four styles), all covering A–Z a–z 0–9. The
``faces`` option may pick any other file of that folder by name (e.g. ``"cmr10"``).

Rendering: grey uint8, white glyph on black, ``size``×``size``, the glyph's ink box centred in
the image, at a font size of ``0.75 * size`` pixels for every face (so face-specific glyph size
stays part of the style).

Coverage rule: a character is kept only if *every* chosen face covers it. A face covers a
character when (1) its cmap maps the code point, checked with fontTools when it is installed,
and (2) the rendered glyph has ink and differs from the face's rendering of U+10FFFD (a
private-use code point no text font maps, so it shows the face's ``.notdef``/tofu glyph).
Without fontTools only (2) is used. Whitespace is never kept.

Split: ``test_fraction`` of the characters (drawn with ``split_seed``) are test characters, the
others train characters; every face renders every character, so train = train characters ×
faces and test = test characters × faces.

Options:
    size: image side in pixels (default 32).
    charset: ``"latin"`` (A–Z a–z 0–9, default), ``"european"`` (printable letters, digits, signs and
        symbols of Basic Latin, Latin-1, Latin Extended-A/B, Greek and Cyrillic, combining marks
        left out: 535 characters covered by all 16 default faces, so each face has 401 train and
        134 test glyphs with ``test_fraction=0.25``), ``"gb2312-1"`` (the 3755 level-1 GB2312 hanzi),
        ``"gb2312"`` (levels 1 and 2, 6763 hanzi, the FounderType-200 range), or the path of a
        UTF-8 text file whose characters (whitespace ignored, duplicates dropped) are the set.
    faces: optional list of faces to use, by file name or stem (``"DejaVuSans-Bold"``), or
        ``"<stem>#<index>"`` for one face of a ``.ttc``; default: all faces found.
    test_fraction: fraction of characters held out for test (default 0.3).
    split_seed: seed of the character split (default 0).
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DatasetNotFoundError, InputError
from .base import Adapter, ImageDataset, opt_fraction, opt_int, opt_size, short_list

FONT_EXTENSIONS = (".ttf", ".otf", ".ttc", ".otc")
LATIN = string.ascii_uppercase + string.ascii_lowercase + string.digits
# Unicode blocks of the "european" charset: Basic Latin, Latin-1 Supplement, Latin Extended-A and
# -B, Greek and Coptic, Cyrillic. Many more glyphs per face than A–Z a–z 0–9, so that a one-vs-all
# test split has enough normal images to tell methods apart.
EUROPEAN_BLOCKS = ((0x21, 0x7E), (0xA1, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF))

# Faces of matplotlib's bundled fonts that really cover A–Z a–z 0–9 (checked with fontTools and
# by eye). Left out: DejaVu*Display (47 and 20 glyphs), STIXNonUni*/STIXSiz* (symbols),
# LastResortHE (maps every code point to a placeholder), cmex10/cmsy10 (math symbols in the
# Latin slots), cmmi10 (math italic), other cm*10 (usable with faces=, not in the default).
DEFAULT_FACES = [
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique", "DejaVuSansMono-BoldOblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
]  # fmt: skip

TOFU_PROBE = "\U0010fffd"
FONT_SCALE = 0.75


def matplotlib_font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def european_chars() -> str:
    """Characters of :data:`EUROPEAN_BLOCKS` that stand alone as glyphs: no marks, controls or spaces."""
    import unicodedata

    return "".join(
        chr(c)
        for lo, hi in EUROPEAN_BLOCKS
        for c in range(lo, hi + 1)
        if chr(c).isprintable() and not unicodedata.category(chr(c)).startswith(("M", "C", "Z"))
    )


def gb2312_chars(levels: int = 1) -> str:
    """GB2312 hanzi: level 1 (rows 0xB0–0xD7, 3755 chars) or levels 1–2 (to 0xF7, 6763 chars).

    Each character is two bytes 0xB0A1..0xF7FE decoded with the gb2312 codec; row 0xD7 stops at
    0xF9 (0xD7FA–0xD7FE are unassigned).
    """
    last_row = 0xD7 if levels == 1 else 0xF7
    out = []
    for hi in range(0xB0, last_row + 1):
        for lo in range(0xA1, 0xFF):
            if hi == 0xD7 and lo > 0xF9:
                continue
            out.append(bytes([hi, lo]).decode("gb2312"))
    return "".join(out)


def resolve_charset(charset) -> tuple[list[str], str]:
    """(characters in order without duplicates or whitespace, a description for ``info``)."""
    if not isinstance(charset, (str, os.PathLike)):
        raise ConfigError(
            f"option charset must be 'latin', 'european', 'gb2312-1', 'gb2312' or a file path, got {charset!r}"
        )
    if charset == "latin":
        text, desc = LATIN, "latin"
    elif charset == "european":
        text, desc = european_chars(), "european"
    elif charset == "gb2312-1":
        text, desc = gb2312_chars(1), "gb2312-1"
    elif charset == "gb2312":
        text, desc = gb2312_chars(2), "gb2312"
    else:
        path = Path(charset).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"option charset must be 'latin', 'european', 'gb2312-1', 'gb2312' or the path of a text file; "
                f"{path} is not a file"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read as UTF-8 text ({exc})") from exc
        desc = str(path)
    chars = list(dict.fromkeys(c for c in text if not c.isspace() and c.isprintable()))
    if not chars:
        raise InputError(f"charset {desc}: no characters")
    return chars, desc


def _face_count(path: Path) -> int:
    if path.suffix.lower() not in (".ttc", ".otc"):
        return 1
    try:
        from fontTools.ttLib import TTCollection

        with TTCollection(str(path), lazy=True) as coll:
            return len(coll.fonts)
    except ImportError:
        pass
    except Exception as exc:  # fontTools raises many types on a damaged file
        raise InputError(f"{path}: unreadable font collection ({exc})") from exc
    from PIL import ImageFont

    n = 0
    while n < 256:
        try:
            ImageFont.truetype(str(path), 12, index=n)
        except OSError:
            break
        n += 1
    return n


def face_cmap(path: Path, index: int) -> set[int] | None:
    """Code points the face maps, or None when fontTools is not installed."""
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        return None
    try:
        with TTFont(str(path), fontNumber=index if path.suffix.lower() in (".ttc", ".otc") else -1, lazy=True) as f:
            return set((f.getBestCmap() or {}).keys())
    except Exception as exc:
        raise InputError(f"{path}: unreadable font file ({exc})") from exc


def _glyph(font, ch: str, size: int) -> np.ndarray:
    """One character, white on black, ink box centred in a size×size grey image."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = draw.textbbox((0, 0), ch, font=font)
    draw.text(((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top), ch, fill=255, font=font)
    return np.asarray(img, dtype=np.uint8)


class Face:
    """One face of a font file, loaded at the render size."""

    def __init__(self, path: Path, index: int, name: str, size: int):
        from PIL import ImageFont

        self.path, self.index, self.name, self.size = path, index, name, size
        try:
            self.font = ImageFont.truetype(str(path), max(1, int(round(size * FONT_SCALE))), index=index)
        except OSError as exc:
            raise InputError(f"{path}: unreadable font file ({exc})") from exc
        self._tofu = _glyph(self.font, TOFU_PROBE, size)

    def render(self, ch: str) -> np.ndarray:
        return _glyph(self.font, ch, self.size)

    def covers(self, chars: list[str], cmap: set[int] | None) -> tuple[list[bool], dict[str, np.ndarray]]:
        """Coverage per character (rule in the module docstring) and the renderings made."""
        out, cache = [], {}
        for ch in chars:
            if cmap is not None and ord(ch) not in cmap:
                out.append(False)
                continue
            img = self.render(ch)
            ok = bool(img.any()) and not np.array_equal(img, self._tofu)
            out.append(ok)
            if ok:
                cache[ch] = img
        return out, cache


def _find_faces(folder: Path, wanted: list[str] | None, default_names: list[str] | None) -> list[tuple[Path, int, str]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FONT_EXTENSIONS)
    faces = []
    for p in files:
        n = _face_count(p)
        for i in range(n):
            faces.append((p, i, p.stem if n == 1 and p.suffix.lower() not in (".ttc", ".otc") else f"{p.stem}#{i}"))
    if wanted is None and default_names is not None:
        wanted = default_names
    if wanted is None:
        return faces
    by_key: dict[str, tuple[Path, int, str]] = {}
    for f in faces:
        by_key.setdefault(f[2], f)
        by_key.setdefault(f[0].name, f)
        if f[2].endswith("#0"):
            by_key.setdefault(f[0].stem, f)
    chosen, missing = [], []
    for w in wanted:
        if w in by_key:
            chosen.append(by_key[w])
        else:
            missing.append(w)
    if missing:
        raise ConfigError(
            f"fonts: no face named {', '.join(map(repr, missing))} in {folder}; "
            f"found: {short_list(sorted({f[2] for f in faces}), 40)}"
        )
    return list(dict.fromkeys(chosen))


def load(
    root=None,
    *,
    download: bool = False,
    size: int = 32,
    charset: str = "latin",
    faces: list[str] | None = None,
    test_fraction: float = 0.3,
    split_seed: int = 0,
) -> ImageDataset:
    side = opt_size(size)[0]
    test_fraction = opt_fraction(test_fraction)
    split_seed = opt_int(split_seed, "split_seed")
    if faces is not None:
        if isinstance(faces, str):
            faces = [f.strip() for f in faces.split(",") if f.strip()]
        if not isinstance(faces, (list, tuple)) or not faces or not all(isinstance(f, str) for f in faces):
            raise ConfigError(f"option faces must be a list of face names, got {faces!r}")
        faces = list(faces)
    chars, charset_desc = resolve_charset(charset)

    if root is None:
        folder = matplotlib_font_dir()
        default_names = DEFAULT_FACES
    else:
        folder = Path(root).expanduser()
        default_names = None
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"dataset 'fonts' not found: {folder} is not a folder; put font files (.ttf, .otf, .ttc) "
                f"in {folder}, one class per face (omit root to use the fonts bundled with matplotlib)"
            )
    chosen = _find_faces(folder, faces, default_names)
    if len(chosen) < 2:
        raise DatasetNotFoundError(
            f"dataset 'fonts': found {len(chosen)} font face(s) in {folder}; put at least two font files "
            "(.ttf, .otf, .ttc) there, one class per face"
        )

    from tqdm.auto import tqdm

    loaded = [Face(p, i, name, side) for p, i, name in chosen]
    keep = np.ones(len(chars), dtype=bool)
    coverage = {}
    caches = []
    used_cmap = True
    # Keep the coverage renderings for reuse unless that would hold more than ~512 MB.
    reuse = len(loaded) * len(chars) * side * side <= 512 * 2**20
    for face in tqdm(loaded, desc="fonts: coverage", unit="face", disable=None, leave=False):
        cmap = face_cmap(face.path, face.index)
        used_cmap = used_cmap and cmap is not None
        ok, cache = face.covers(chars, cmap)
        coverage[face.name] = int(sum(ok))
        keep &= np.array(ok, dtype=bool)
        caches.append(cache if reuse else {})
    kept = [c for c, k in zip(chars, keep) if k]
    if len(kept) < 2:
        worst = min(coverage, key=coverage.get)
        raise InputError(
            f"fonts: only {len(kept)} of {len(chars)} characters of charset {charset_desc} are covered by every "
            f"face; {worst!r} covers {coverage[worst]}. Choose faces that cover the charset (option faces)."
        )

    rng = np.random.default_rng(split_seed)
    n_test = min(max(int(round(len(kept) * test_fraction)), 1), len(kept) - 1)
    perm = rng.permutation(len(kept))
    test_set = set(perm[:n_test].tolist())
    train_chars = [c for i, c in enumerate(kept) if i not in test_set]
    test_chars = [c for i, c in enumerate(kept) if i in test_set]

    def block(char_list):
        x = np.empty((len(loaded) * len(char_list), side, side), dtype=np.uint8)
        y = np.repeat(np.arange(len(loaded), dtype=np.int64), len(char_list))
        for k, (face, cache) in enumerate(zip(loaded, caches)):
            for j, ch in enumerate(char_list):
                x[k * len(char_list) + j] = cache[ch] if ch in cache else face.render(ch)
        return x, y

    x_train, y_train = block(train_chars)
    x_test, y_test = block(test_chars)
    names = [f.name for f in loaded]
    return ImageDataset(
        name="fonts",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=names,
        ids_test=[f"{n}/{ch}" for n in names for ch in test_chars],
        info={
            "source": "matplotlib bundled fonts" if root is None else "font folder",
            "folder": str(folder),
            "faces": [{"name": f.name, "file": f.path.name, "index": f.index} for f in loaded],
            "charset": charset_desc,
            "chars_requested": len(chars),
            "chars_kept": len(kept),
            "coverage_rule": ("cmap (fontTools) and " if used_cmap else "")
            + "ink differing from the U+10FFFD .notdef rendering",
            "train_chars": "".join(train_chars),
            "test_chars": "".join(test_chars),
            "size": side,
            "test_fraction": test_fraction,
            "split_seed": split_seed,
        },
    )


ADAPTER = Adapter(
    load=load,
    options={"size": 32, "charset": "latin", "faces": None, "test_fraction": 0.3, "split_seed": 0},
    downloadable=False,
    summary="font-style anomalies, one class per font face (default: 16 faces bundled with matplotlib)",
)
