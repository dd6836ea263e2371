"""The real download path, against a local HTTP server on 127.0.0.1 (tests never touch the internet)."""

import dataclasses
import functools
import hashlib
import http.server
import threading
import zipfile

import pytest

from lmrec.data import SPECS, download_dataset, load_dataset
from lmrec.errors import DataError

from . import fixtures


@pytest.fixture
def server(tmp_path):
    """Serve a small ml-100k.zip (same layout as GroupLens': files under ml-100k/) from tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    src = fixtures.write_ml100k(tmp_path / "src")
    with zipfile.ZipFile(www / "ml-100k.zip", "w") as zf:
        for f in sorted(src.iterdir()):
            zf.write(f, f"ml-100k/{f.name}")
        zf.writestr("ml-100k/", "")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    data = (www / "ml-100k.zip").read_bytes()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/ml-100k.zip", data
    httpd.shutdown()


def _point_spec(monkeypatch, url, checksum):
    spec = SPECS["movielens-100k"]
    monkeypatch.setitem(SPECS, "movielens-100k", dataclasses.replace(
        spec, download=dataclasses.replace(spec.download, url=url, checksum=checksum)))


@pytest.mark.parametrize("algo", ["md5", "sha256"])
def test_download_verifies_and_installs(server, tmp_path, monkeypatch, algo):
    url, data = server
    _point_spec(monkeypatch, url, f"{algo}:{hashlib.new(algo, data).hexdigest()}")
    home = tmp_path / "home"
    path = download_dataset("movielens-100k", data_dir=home)
    assert path == home / "movielens-100k"
    assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in (tmp_path / "src").iterdir())
    assert [p.name for p in home.iterdir()] == ["movielens-100k"]  # no archive or temp folder left
    assert len(load_dataset("movielens-100k", data_dir=home).interactions) == 6


def test_checksum_mismatch_installs_nothing(server, tmp_path, monkeypatch):
    url, _ = server
    _point_spec(monkeypatch, url, "sha256:" + "0" * 64)
    home = tmp_path / "home"
    with pytest.raises(DataError, match="checksum mismatch .* nothing was installed"):
        download_dataset("movielens-100k", data_dir=home)
    assert list(home.iterdir()) == []


def test_unreachable_server_is_a_clear_error(tmp_path, monkeypatch):
    _point_spec(monkeypatch, "http://127.0.0.1:9/none.zip", "md5:00")
    with pytest.raises(DataError, match="download of http://127.0.0.1:9/none.zip failed"):
        download_dataset("movielens-100k", data_dir=tmp_path)


def test_datasets_without_a_public_download_say_how_to_get_them(tmp_path):
    from lmrec.errors import ConfigError

    with pytest.raises(ConfigError, match="no public download; to get it: copy"):
        download_dataset("amazon-scientific", data_dir=tmp_path)
