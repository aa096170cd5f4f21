import dataclasses
import gzip
import hashlib
import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fgad.data import download, mnist
from fgad.data.download import DownloadError, RemoteFile, UnsafeArchiveError, safe_extract, verify_checksum
from fgad.errors import InputError, OutputError


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_verify_checksum(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello")
    verify_checksum(p, md5=md5(b"hello"), sha256=hashlib.sha256(b"hello").hexdigest())
    with pytest.raises(DownloadError, match="MD5 is .* expected 0+"):
        verify_checksum(p, md5="0" * 32)
    assert p.exists()
    with pytest.raises(DownloadError, match="SHA256 .* removed"):
        verify_checksum(p, sha256="0" * 64, remove=True)
    assert not p.exists()


def test_download_from_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 3_000_000)
    dest = tmp_path / "dl"
    out = download.download_file(RemoteFile((src.as_uri(),), "got.bin", md5=md5(src.read_bytes())), dest)
    assert out == dest / "got.bin" and out.read_bytes() == src.read_bytes()
    assert os.listdir(dest) == ["got.bin"], "no temporary file left behind"


def test_checksum_mismatch_removes_download(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"tampered")
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match="MD5 is .* expected .* removed"):
        download.download_file(RemoteFile((src.as_uri(),), "got.bin", md5=md5(b"original")), dest)
    assert os.listdir(dest) == []


class FakeResponse(io.BytesIO):
    headers = {"Content-Length": "4"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_mirrors_tried_in_order_with_fake_opener(tmp_path, monkeypatch):
    seen = []

    def fake_urlopen(url, timeout=None):
        seen.append(url)
        if "bad" in url:
            raise download.urllib.error.URLError("unreachable")
        return FakeResponse(b"data")

    monkeypatch.setattr(download, "urlopen", fake_urlopen)
    r = RemoteFile(("https://bad.example/f", "https://good.example/f"), "f", md5=md5(b"data"))
    assert download.download_file(r, tmp_path).read_bytes() == b"data"
    assert seen == ["https://bad.example/f", "https://good.example/f"]
    with pytest.raises(DownloadError, match="(?s)could not download f2.*unreachable"):
        download.download_file(RemoteFile(("https://bad.example/f2",), "f2", md5="0" * 32), tmp_path)


def test_fetch_skips_present_files(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "urlopen", lambda *a, **k: pytest.fail("must not download"))
    for r in download.RESOURCES["mnist"]:
        (tmp_path / r.filename).write_bytes(b"")
    assert len(download.fetch("mnist", tmp_path)) == 4


def test_resources_have_checksums():
    for remotes in download.RESOURCES.values():
        for r in remotes:
            assert r.urls and all(u.startswith(("https://", "http://")) for u in r.urls)
            assert r.md5 and len(r.md5) == 32
            assert r.size and r.size > 0, "every download has an exact size, which caps it"
    for r in download.RESOURCES["mnist"]:
        assert len(r.content_sha256) == 64 and r.content_size > r.size


def test_resources_list_https_mirrors_first():
    for name, remotes in download.RESOURCES.items():
        for r in remotes:
            schemes = [u.split("://")[0] for u in r.urls]
            assert schemes[0] == "https", f"{name}/{r.filename}: first mirror must be https"
            assert schemes == sorted(schemes, key=lambda s: s != "https"), f"{name}/{r.filename}: http only after https"


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, payload
                tf.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, payload
                tf.addfile(info)
            elif kind == "dev":
                info.type = tarfile.CHRTYPE
                tf.addfile(info)
    return path


def test_safe_extract_tar(tmp_path):
    arch = _tar(tmp_path / "ok.tar.gz", [("data/a.bin", "file", b"A"), ("data/sub/b.bin", "file", b"B"),
                                           ("data/link", "sym", "sub/b.bin")])  # fmt: skip
    dest = tmp_path / "out"
    assert safe_extract(arch, dest) == [dest / "data"]
    assert (dest / "data" / "sub" / "b.bin").read_bytes() == b"B"
    assert sorted(os.listdir(dest)) == ["data"]


def test_safe_extract_never_replaces_an_existing_folder(tmp_path):
    arch = _tar(tmp_path / "ok.tar.gz", [("data/a.bin", "file", b"A")])
    dest = tmp_path / "out"
    (dest / "data").mkdir(parents=True)
    (dest / "data" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="already exists"):
        safe_extract(arch, dest)
    assert (dest / "data" / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(dest)) == ["data"]  # no temporary folder left behind


@pytest.mark.parametrize(
    "member",
    [
        ("../evil.txt", "file", b"x"),
        ("data/../../evil.txt", "file", b"x"),
        ("/tmp/evil.txt", "file", b"x"),
        ("data/link", "sym", "../../etc/passwd"),
        ("data/link", "sym", "/etc/passwd"),
        ("data/hard", "hard", "../outside"),
        ("data/dev", "dev", None),
    ],
)
def test_safe_extract_tar_refuses_escapes(tmp_path, member):
    arch = _tar(tmp_path / "bad.tar.gz", [("data/ok.bin", "file", b"ok"), member])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="refusing member"):
        safe_extract(arch, dest)
    assert not dest.exists() or os.listdir(dest) == [], "nothing may be written"
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/abs/evil.txt", "C:\\evil.txt"])
def test_safe_extract_zip_refuses_escapes(tmp_path, name):
    arch = tmp_path / "bad.zip"
    with zipfile.ZipFile(arch, "w") as zf:
        zf.writestr("ok/a.txt", "fine")
        zf.writestr(name, "evil")
    with pytest.raises(UnsafeArchiveError, match="escapes the target folder"):
        safe_extract(arch, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_zip_ok(tmp_path):
    arch = tmp_path / "ok.zip"
    with zipfile.ZipFile(arch, "w") as zf:
        zf.writestr("ok/a.txt", "fine")
    safe_extract(arch, tmp_path / "out")
    assert (tmp_path / "out" / "ok" / "a.txt").read_text() == "fine"


# ---------------------------------------------------------------------------------------------
# checksums, size caps and mirrors


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_sha256_mismatch_removes_partial_file_and_tries_next_mirror(tmp_path):
    bad, good = tmp_path / "bad.bin", tmp_path / "good.bin"
    bad.write_bytes(b"tampered")
    good.write_bytes(b"original")
    dest = tmp_path / "dl"
    r = RemoteFile((bad.as_uri(), good.as_uri()), "got.bin", sha256=sha256(b"original"))
    assert download.download_file(r, dest).read_bytes() == b"original"
    assert os.listdir(dest) == ["got.bin"]
    with pytest.raises(DownloadError, match=r"^could not download got2.bin: .*SHA256 is .* removed[^\n]*$"):
        download.download_file(RemoteFile((bad.as_uri(),), "got2.bin", sha256=sha256(b"original")), dest)
    assert os.listdir(dest) == ["got.bin"], "the partial download was removed"


class EndlessResponse:
    """A server that never stops sending and announces no length; counts what was read."""

    def __init__(self):
        self.headers, self.served = {}, 0

    def read(self, n=-1):
        assert n is not None and 0 <= n <= 1 << 20, "reads are bounded"
        self.served += n
        return b"x" * n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.mark.parametrize("declared", [10, None])
def test_oversize_download_stops_past_the_cap_and_removes_the_file(tmp_path, monkeypatch, declared):
    resp = EndlessResponse()
    monkeypatch.setattr(download, "urlopen", lambda url, timeout=None: resp)
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 1000)
    cap = declared or 1000
    with pytest.raises(DownloadError, match=f"more than the expected {cap} bytes.*removed"):
        download.download_file(RemoteFile(("https://x.example/f",), "f", size=declared), tmp_path / "dl")
    assert resp.served == cap + 1, "reading stopped one byte past the cap"
    assert os.listdir(tmp_path / "dl") == []


def test_oversize_announced_length_is_refused_before_reading(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5000)  # file:// responses carry a Content-Length
    with pytest.raises(DownloadError, match="announces 5000 bytes, more than the expected 100"):
        download.download_file(RemoteFile((src.as_uri(),), "f", size=100), tmp_path / "dl")
    assert os.listdir(tmp_path / "dl") == []


def test_short_download_is_refused(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 50)
    with pytest.raises(DownloadError, match="got 50 bytes, expected 100"):
        download.download_file(RemoteFile((src.as_uri(),), "f", size=100), tmp_path / "dl")
    assert os.listdir(tmp_path / "dl") == []


def test_gzip_content_sha256_is_checked(tmp_path):
    content = b"IDX" * 1000
    src = tmp_path / "f.gz"
    src.write_bytes(gzip.compress(content))
    dest = tmp_path / "dl"
    ok = RemoteFile((src.as_uri(),), "f.gz", content_sha256=sha256(content), content_size=len(content))
    assert download.download_file(ok, dest).read_bytes() == src.read_bytes()
    for bad, msg in [
        (dataclasses.replace(ok, filename="g.gz", content_sha256="0" * 64), "decompressed SHA256 is .* expected 0+"),
        (dataclasses.replace(ok, filename="g.gz", content_size=100), "decompresses to more than 100 bytes"),
    ]:
        with pytest.raises(DownloadError, match=msg):
            download.download_file(bad, dest)
    assert os.listdir(dest) == ["f.gz"]


def _mnist_idx_files(npz: Path) -> dict[str, bytes]:
    """The four raw IDX files rebuilt from arrays: magic 0x803 / 0x801, big-endian dims, uint8 data."""
    d = np.load(npz, allow_pickle=False)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = d[f"x_{split}"], d[f"y_{split}"]
        out[f"{prefix}-images-idx3-ubyte"] = struct.pack(">4i", 0x803, *x.shape) + x.astype(np.uint8).tobytes()
        out[f"{prefix}-labels-idx1-ubyte"] = struct.pack(">2i", 0x801, len(y)) + y.astype(np.uint8).tobytes()
    return out


SHARED_MNIST = Path(os.environ.get("FGAD_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
SHARED_MNIST = SHARED_MNIST / "mnist.npz"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="needs the shared offline MNIST copy (FGAD_SHARED_DATA)")
def test_mnist_content_checksums_match_an_independent_copy(tmp_path):
    """The SHA-256s in RESOURCES are those of MNIST's IDX files, rebuilt from a bit-exact copy
    whose MD5s match the raw files' published ones; a download of them passes the content check."""
    raw_md5 = {  # MD5s of the raw IDX files (shared/data/README.md)
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    }
    files = _mnist_idx_files(SHARED_MNIST)
    for r in download.RESOURCES["mnist"]:
        data = files[r.filename.removesuffix(".gz")]
        assert md5(data) == raw_md5[r.filename.removesuffix(".gz")]
        assert (sha256(data), len(data)) == (r.content_sha256, r.content_size)
    # served gzipped from a file:// URL: the content check alone accepts it (our .gz bytes differ)
    r = download.RESOURCES["mnist"][3]
    src = tmp_path / "srv" / r.filename
    src.parent.mkdir()
    src.write_bytes(gzip.compress(files[r.filename.removesuffix(".gz")]))
    local = dataclasses.replace(r, urls=(src.as_uri(),), md5=None, size=None)
    assert download.download_file(local, tmp_path / "dl").is_file()


def test_idx_gzip_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "MAX_IDX_BYTES", 1000)
    p = tmp_path / "bomb-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(struct.pack(">2i", 0x801, 5000) + bytes(5000)))
    with pytest.raises(InputError, match="decompresses to more than 1000 bytes"):
        mnist.read_idx(p, 1)


# ---------------------------------------------------------------------------------------------
# extraction caps


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "members",
    [
        [("data/ok.bin", "file", b"ok"), ("../evil.txt", "file", b"x")],
        [("data/ok.bin", "file", b"ok"), ("data/link", "sym", "../../evil.txt"), ("data/link", "file", b"x")],
        [("data/a.bin", "file", b"a" * 600), ("data/b.bin", "file", b"b" * 600)],  # 1200 bytes > cap 1000
        [(f"data/{i}.bin", "file", b"x") for i in range(11)],  # 11 members > cap 10
    ],
    ids=["dotdot", "symlink-escape", "too-many-bytes", "too-many-members"],
)
def test_unsafe_or_oversize_tar_writes_nothing(tmp_path, monkeypatch, members):
    monkeypatch.setattr(download, "MAX_EXTRACT_BYTES", 1000)
    monkeypatch.setattr(download, "MAX_MEMBERS", 10)
    arch = _tar(tmp_path / "bad.tar.gz", members)
    before = _tree(tmp_path)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=r"refusing (member|it: (more than|its members hold more than))"):
        safe_extract(arch, dest)
    assert _tree(tmp_path) == before, "nothing written, inside or outside the target"


def test_extract_caps_can_be_given_per_call(tmp_path):
    arch = _tar(tmp_path / "a.tar.gz", [("d/a.bin", "file", b"a" * 600)])
    with pytest.raises(UnsafeArchiveError, match="hold more than 500 bytes"):
        safe_extract(arch, tmp_path / "out", max_bytes=500)
    assert safe_extract(arch, tmp_path / "out", max_bytes=600) == [tmp_path / "out" / "d"]


def test_oversize_zip_is_refused(tmp_path):
    arch = tmp_path / "big.zip"
    with zipfile.ZipFile(arch, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("d/zeros.bin", bytes(100_000))  # compresses to a few hundred bytes
    with pytest.raises(UnsafeArchiveError, match="hold more than 1000 bytes"):
        safe_extract(arch, tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out").exists()
    with pytest.raises(UnsafeArchiveError, match="more than 0 members"):
        download.check_archive(arch, max_members=0)
