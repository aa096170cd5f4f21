import hashlib
import io
import os
import tarfile
import zipfile

import pytest

from fgad.data import download
from fgad.data.download import DownloadError, RemoteFile, UnsafeArchiveError, safe_extract, verify_checksum


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
    for name, remotes in download.RESOURCES.items():
        for r in remotes:
            assert r.urls and all(u.startswith(("https://", "http://")) for u in r.urls)
            assert r.md5 and len(r.md5) == 32


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
