"""`efficient-sam2 download` against a small file served on 127.0.0.1 (with HTTP Range support written here)."""

from __future__ import annotations

import hashlib
import http.server
import re
import subprocess
import sys
import threading

import pytest

from efficient_sam2.cli import main
from efficient_sam2.download import CHECKPOINTS, DownloadError, checkpoint_info, download_checkpoint

PAYLOAD = bytes(range(256)) * 1200 + b"tail"  # 307204 bytes
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """Serves PAYLOAD at /file.pt. Knobs: cut_next (send only this many bytes of the next response, then close),
    ranges (honour Range headers), and a record of the Range header of every request."""

    def __init__(self):
        self.cut_next = None
        self.ranges = True
        self.requests: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                if self.path != "/file.pt":
                    self.send_error(404)
                    return
                start, status = 0, 200
                if rng and outer.ranges:
                    m = re.fullmatch(r"bytes=(\d+)-", rng)
                    start = int(m.group(1))
                    if start >= len(PAYLOAD):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = PAYLOAD[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                self.end_headers()
                if outer.cut_next is not None:
                    body, outer.cut_next = body[: outer.cut_next], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file.pt"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _dl(tmp_path, url, *extra):
    return main(["download", "tiny", "--dir", str(tmp_path), "--url", url, "--no-progress", "--timeout", "10",
                 *extra])


def test_download_verifies_and_records_hash(tmp_path, server, capsys):
    assert _dl(tmp_path, server.url, "--sha256", DIGEST.upper()) == 0
    out = capsys.readouterr().out
    final = tmp_path / "sam2.1_hiera_tiny.pt"
    assert final.read_bytes() == PAYLOAD
    assert (tmp_path / "sam2.1_hiera_tiny.pt.sha256").read_text() == f"{DIGEST}  sam2.1_hiera_tiny.pt\n"
    assert DIGEST in out and "verified" in out
    assert not (tmp_path / "sam2.1_hiera_tiny.pt.part").exists()
    assert server.requests == [None]


def test_interrupted_download_resumes_with_range(tmp_path, server, capsys):
    server.cut_next = 100_000
    assert _dl(tmp_path, server.url, "--retries", "0") == 1
    err = capsys.readouterr().err
    assert "run the same command again to resume" in err
    part = tmp_path / "sam2.1_hiera_tiny.pt.part"
    assert part.stat().st_size == 100_000 and not (tmp_path / "sam2.1_hiera_tiny.pt").exists()

    assert _dl(tmp_path, server.url, "--sha256", DIGEST) == 0
    assert server.requests == [None, "bytes=100000-"]
    assert (tmp_path / "sam2.1_hiera_tiny.pt").read_bytes() == PAYLOAD
    assert not part.exists()


def test_automatic_retry_and_servers_without_range(tmp_path, server):
    server.cut_next = 5000
    path = download_checkpoint("tiny", tmp_path, url=server.url, sha256=DIGEST, progress=False, retries=2,
                               retry_wait=0)
    assert path.read_bytes() == PAYLOAD and server.requests == [None, "bytes=5000-"]

    # A server that ignores Range answers 200 with the whole file: the partial file is restarted, not appended.
    server.ranges = False
    server.requests.clear()
    other = tmp_path / "other"
    other.mkdir()
    (other / "sam2.1_hiera_tiny.pt.part").write_bytes(PAYLOAD[:777])
    path = download_checkpoint("tiny", other, url=server.url, sha256=DIGEST, progress=False)
    assert path.read_bytes() == PAYLOAD and server.requests == ["bytes=777-"]


def test_complete_part_file_is_finished_without_transfer(tmp_path, server):
    (tmp_path / "sam2.1_hiera_tiny.pt.part").write_bytes(PAYLOAD)
    path = download_checkpoint("tiny", tmp_path, url=server.url, sha256=DIGEST, progress=False)
    assert path.read_bytes() == PAYLOAD and server.requests == [f"bytes={len(PAYLOAD)}-"]


def test_wrong_hash_is_rejected(tmp_path, server, capsys):
    assert _dl(tmp_path, server.url, "--sha256", "0" * 64) == 1
    err = capsys.readouterr().err
    assert "SHA-256 mismatch" in err and DIGEST in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing kept under the final name (nor the .part)
    assert _dl(tmp_path, server.url, "--sha256", "xyz") == 1
    assert "64 hexadecimal digits" in capsys.readouterr().err


def test_existing_file_refused_without_overwrite(tmp_path, server, capsys):
    final = tmp_path / "sam2.1_hiera_tiny.pt"
    final.write_bytes(b"precious")
    (tmp_path / "keep.txt").write_text("user data")
    assert _dl(tmp_path, server.url) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert final.read_bytes() == b"precious" and server.requests == []
    assert _dl(tmp_path, server.url, "--overwrite") == 0
    assert final.read_bytes() == PAYLOAD
    # --overwrite replaces only the file it downloads (and its .sha256 record)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "sam2.1_hiera_tiny.pt",
                                                          "sam2.1_hiera_tiny.pt.sha256"]
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_unknown_name_http_errors_and_listing(tmp_path, server, capsys):
    assert main(["download", "sam3_hiera_huge", "--dir", str(tmp_path)]) == 2
    assert "unknown checkpoint 'sam3_hiera_huge'" in capsys.readouterr().err
    assert main(["download", "--dir", str(tmp_path)]) == 2
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_checkpoint("large", tmp_path, url=server.url.replace("file.pt", "nope.pt"), progress=False)
    with pytest.raises(DownloadError, match="cannot reach"):
        download_checkpoint("large", tmp_path, url="http://127.0.0.1:9/x.pt", progress=False, retries=0, timeout=5)
    assert main(["download", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_base_plus.pt" in listed


def test_official_urls():
    assert len(CHECKPOINTS) == 8
    for size in ("tiny", "small", "base_plus", "large"):
        assert checkpoint_info(f"sam2.1_hiera_{size}").url == (
            f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{size}.pt")
        assert checkpoint_info(f"sam2_hiera_{size}").url == (
            f"https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_{size}.pt")
    assert checkpoint_info("large").name == "sam2.1_hiera_large"
    assert all(info.sha256 is None for info in CHECKPOINTS.values())  # no invented hashes


def test_model_loading_never_imports_the_downloader(tmp_path):
    code = (
        "import sys, torch, efficient_sam2\n"
        "from efficient_sam2.build import read_state_dict\n"
        "from efficient_sam2.cli import build_parser\n"
        "build_parser()\n"
        "torch.save({'model': {'w': torch.zeros(2)}}, sys.argv[1])\n"
        "read_state_dict(sys.argv[1])\n"
        "print('efficient_sam2.download' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.pt")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False"]
