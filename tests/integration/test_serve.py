"""`suangu serve` starts the API on a database and answers on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from suangu.api.metrics import iter_samples


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_public_market_data(tmp_path: Path) -> None:
    port = _free_port()
    url = f"sqlite:///{tmp_path / 'suangu.db'}"
    env = {**os.environ, "SUANGU_DATABASE_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "suangu.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/market/grid", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "server did not start in 30 s"
                time.sleep(0.2)
        assert r.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/me", timeout=2).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_with_a_bad_database_url_says_so() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "suangu.cli", "serve", "--database-url", "nosuchdb://x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "database_url" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr + out.stdout


@contextmanager
def serving(tmp_path: Path, *args: str, scheme: str = "http") -> Iterator[tuple[str, Path]]:
    """``suangu serve`` on a free port in a subprocess: its base URL and its log file."""
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "SUANGU_DATABASE_URL": f"sqlite:///{tmp_path / 'suangu.db'}"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suangu.cli", "serve", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"{scheme}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/api/v1/market/grid", timeout=2, verify=False)
                break
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "server did not start in 60 s"
                time.sleep(0.2)
        yield base, log
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_prints_its_url_logs_json_and_sums_metrics_over_workers(tmp_path: Path) -> None:
    with serving(tmp_path, "--workers", "2", "--no-clearing-loop") as (base, log):
        for k in range(12):
            r = httpx.get(f"{base}/api/v1/market/grid", headers={"X-Request-ID": f"t-{k}"})
            assert r.headers["x-request-id"] == f"t-{k}"
        counts = []
        for _ in range(4):  # whichever worker answers, it sums both workers' samples
            text = httpx.get(f"{base}/metrics", timeout=10).text
            counts.append(
                sum(
                    v
                    for n, lab, v in iter_samples(text)
                    if n == "suangu_http_request_duration_seconds_count"
                    and lab["route"] == "/api/v1/market/grid"
                )
            )
        assert min(counts) >= 12, counts
        time.sleep(0.5)
        lines = log.read_text().splitlines()
    assert f"Serving Suangu at {base}/" in "\n".join(lines)
    docs = [json.loads(line) for line in lines if line.startswith("{")]
    access = [d for d in docs if d.get("logger") == "uvicorn.access"]
    assert {d.get("request_id") for d in access} >= {f"t-{k}" for k in range(12)}
    assert all(d["level"] and d["ts"] for d in docs)


def _self_signed(where: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with ``cryptography``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = where / "cert.pem", where / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_serve_over_tls(tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    args = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--no-clearing-loop")
    with serving(tmp_path, *args, scheme="https") as (base, log):
        trusted = ssl.create_default_context(cafile=str(cert))
        r = httpx.get(f"{base}/api/v1/market/grid", verify=trusted, timeout=5)
        assert r.status_code == 200 and r.url.scheme == "https"
        try:
            httpx.get(base.replace("https", "http") + "/api/v1/market/grid", timeout=5)
            raise AssertionError("plain HTTP was answered")
        except httpx.TransportError:
            pass
    assert f"Serving Suangu at {base}/" in log.read_text()


def test_serve_needs_both_tls_files(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "suangu.cli", "serve", "--ssl-certfile", str(cert)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "ssl_keyfile" in out.stderr and "Traceback" not in out.stderr
