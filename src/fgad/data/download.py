"""Downloads with checksums, and archive extraction that cannot write outside its folder.

Only datasets whose licence allows it are downloadable (MNIST, Fashion-MNIST, CIFAR-10,
CIFAR-100, CUB-200-2011); the URLs and checksums are all in :data:`RESOURCES`. A download goes
to a temporary file next to its target, is hashed while it streams, and is renamed into place
only if the checksum matches; on a mismatch the temporary file is removed and an error raised.

Archives (``.tar``, ``.tar.gz``/``.tgz``, ``.zip``) are checked member by member before anything
is written: absolute paths, ``..`` components, links pointing outside the target folder and
device files are refused, the whole archive with them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import FgadError, InputError
from ..io.fileio import OutputError, _fsync_dir


class DownloadError(FgadError, OSError):
    """A download that failed or whose checksum does not match."""


class UnsafeArchiveError(InputError):
    """An archive with a member that would be written outside the target folder."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: mirror URLs tried in order, the name to save it as, its checksum."""

    urls: tuple[str, ...]
    filename: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None  # bytes, only for the progress bar when the server sends no length


# MD5s are the ones published by the dataset authors (CIFAR page) and used by torchvision
# (MNIST, Fashion-MNIST, CUB-200-2011); sizes are informative only (progress bar).
RESOURCES: dict[str, list[RemoteFile]] = {
    "mnist": [
        RemoteFile(
            (f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}", f"http://yann.lecun.com/exdb/mnist/{f}"),
            f,
            md5=m,
            size=s,
        )
        for f, m, s in [
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542),
        ]
    ],
    "fashion-mnist": [
        RemoteFile((f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{f}",), f, md5=m, size=s)
        for f, m, s in [
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", 29515),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", 4422102),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", 5148),
        ]
    ],
    "cifar10": [
        RemoteFile(
            ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
            "cifar-10-binary.tar.gz",
            md5="c32a1d4ab5d03f1284b67883e8d87530",
            size=170052171,
        )
    ],
    "cifar100": [
        RemoteFile(
            ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",),
            "cifar-100-binary.tar.gz",
            md5="03b5dce01913d631647c71ecec9e9cb8",
            size=168513733,
        )
    ],
    "cub200": [
        RemoteFile(
            (
                "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
                "https://s3-us-west-2.amazonaws.com/caltech-ucsd-birds-200-2011/CUB_200_2011.tgz",
            ),
            "CUB_200_2011.tgz",
            md5="97eceeb196236b17998738112f37df78",
            size=1150585339,  # as recalled; only used for the progress bar
        )
    ],
}

# Tests replace this with a fake; it must behave like urllib.request.urlopen(url, timeout=...).
urlopen = urllib.request.urlopen

_CHUNK = 1 << 20


def file_hash(path: str | os.PathLike, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(
    path: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None, remove: bool = False
) -> None:
    """Raise :class:`DownloadError` if the file's MD5 / SHA-256 differ; optionally remove it."""
    path = Path(path)
    for algo, want in (("md5", md5), ("sha256", sha256)):
        if want is None:
            continue
        got = file_hash(path, algo)
        if got.lower() != want.lower():
            if remove:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise DownloadError(
                f"{path.name}: {algo.upper()} is {got}, expected {want}"
                + ("; the file was removed" if remove else "")
                + ". The download is corrupt or the file changed upstream; try again."
            )


def download_file(remote: RemoteFile, folder: str | os.PathLike, *, progress: bool = True) -> Path:
    """Fetch ``remote`` into ``folder`` (mirrors in order), verify it, and move it into place.

    The bytes go to a temporary file in ``folder``; the checksum is checked before the rename,
    so ``folder/<filename>`` only ever appears complete and verified. Returns its path.
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    target = folder / remote.filename
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {folder}: {exc.strerror or exc}") from exc
    errors = []
    for url in remote.urls:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{remote.filename}.", suffix=".part", dir=folder)
        except OSError as exc:
            raise OutputError(f"cannot write {folder}: {exc.strerror or exc}") from exc
        try:
            hashes = {a: hashlib.new(a) for a in ("md5", "sha256")}
            with os.fdopen(fd, "wb") as out, urlopen(url, timeout=60) as resp:
                length = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
                total = int(length) if length and str(length).isdigit() else remote.size
                with tqdm(total=total, unit="B", unit_scale=True, desc=remote.filename, disable=not progress or None) as bar:
                    for block in iter(lambda: resp.read(_CHUNK), b""):
                        out.write(block)
                        for h in hashes.values():
                            h.update(block)
                        bar.update(len(block))
                out.flush()
                os.fsync(out.fileno())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            errors.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            continue
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        for algo, want in (("md5", remote.md5), ("sha256", remote.sha256)):
            got = hashes[algo].hexdigest()
            if want is not None and got.lower() != want.lower():
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise DownloadError(
                    f"{remote.filename} from {url}: {algo.upper()} is {got}, expected {want}; "
                    "the download was removed. Try again, or fetch the file by hand and put it in "
                    f"{folder}"
                )
        try:
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
        _fsync_dir(folder)
        return target
    raise DownloadError(f"could not download {remote.filename}: " + "; ".join(errors))


def fetch(name: str, folder: str | os.PathLike, *, progress: bool = True) -> list[Path]:
    """Download every file of dataset ``name`` into ``folder`` unless already there."""
    if name not in RESOURCES:
        raise FgadError(f"dataset '{name}' cannot be downloaded; known downloads: {', '.join(RESOURCES)}")
    out = []
    for remote in RESOURCES[name]:
        target = Path(folder) / remote.filename
        out.append(target if target.is_file() else download_file(remote, folder, progress=progress))
    return out


# ---------------------------------------------------------------------------------------------
# safe extraction


def _check_member_name(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if (
        not name
        or p.is_absolute()
        or PureWindowsPath(name).drive
        or PureWindowsPath(name).is_absolute()
        or ".." in p.parts
    ):
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: its path escapes the target folder")
    return p


def _inside(rel: PurePosixPath) -> bool:
    """Whether a relative path, resolved lexically, stays inside its base."""
    depth = 0
    for part in rel.parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def check_archive(archive: str | os.PathLike) -> None:
    """Raise :class:`UnsafeArchiveError` if any member would land outside the target folder."""
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member_name(info.filename, archive)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnsafeArchiveError(f"{archive}: refusing member {info.filename!r}: symbolic link")
        return
    try:
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                p = _check_member_name(m.name, archive)
                if m.issym() or m.islnk():
                    target = PurePosixPath(m.linkname.replace("\\", "/"))
                    base = p.parent if m.issym() else PurePosixPath()
                    if target.is_absolute() or not _inside(base / target):
                        raise UnsafeArchiveError(
                            f"{archive}: refusing member {m.name!r}: link to {m.linkname!r} points outside the target folder"
                        )
                elif not (m.isfile() or m.isdir()):
                    raise UnsafeArchiveError(f"{archive}: refusing member {m.name!r}: not a regular file or folder")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InputError(f"{archive}: not a readable tar or zip archive ({exc})") from exc


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract ``archive`` into ``dest`` after checking every member; returns the top-level paths.

    Extraction goes to a temporary folder inside ``dest`` first; its top-level entries are then
    renamed into ``dest`` (an existing entry of the same name is replaced), so a failed or
    interrupted extraction leaves no half-written dataset folder behind.
    """
    archive, dest = Path(archive), Path(dest)
    check_archive(archive)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, filter="data")
                else:  # pragma: no cover - Python < 3.11.4; members were checked above
                    tf.extractall(tmp)
        out = []
        for child in sorted(tmp.iterdir()):
            target = dest / child.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(child, target)
            out.append(target)
        _fsync_dir(dest)
        return out
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{archive}: corrupt or truncated archive ({exc})") from exc
    except OSError as exc:
        raise OutputError(f"cannot extract {archive} into {dest}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
