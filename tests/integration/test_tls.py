"""TLS: `cert` makes a development certificate; `run --certfile/--keyfile` serves wss://."""

from __future__ import annotations

import json
import ssl
import stat
import urllib.request

import pytest
from cryptography import x509
from veraltheim.service.cli import fetch_health
from veraltheim.service.config import load_config
from veraltheim.service.tls import client_ssl_context

from tests.support.phx_frames import WAIT_S, join, open_socket
from tests.support.service import service_cli


@pytest.fixture
def dev_cert(tmp_path):
    out = service_cli("cert", "--out", str(tmp_path / "certs"))
    assert out.returncode == 0, out.stderr
    return tmp_path / "certs" / "cert.pem", tmp_path / "certs" / "key.pem"


def test_cert_command_writes_a_localhost_certificate(dev_cert):
    cert_path, key_path = dev_cert
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1"}


def test_cert_never_overwrites_an_existing_key_unless_forced(dev_cert):
    cert_path, key_path = dev_cert
    before = cert_path.read_bytes(), key_path.read_bytes()
    again = service_cli("cert", "--out", str(cert_path.parent))
    assert again.returncode == 1
    assert again.stderr.splitlines() == [
        f"veraltheim-service: error: {cert_path} exists; "
        "use --force to replace it, or another --out"
    ]
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before
    forced = service_cli("cert", "--out", str(cert_path.parent), "--force")
    assert forced.returncode == 0, forced.stderr
    assert key_path.read_bytes() != before[1]


async def test_wss_with_a_trusted_dev_cert(service_factory, dev_cert):
    cert_path, key_path = dev_cert
    svc = service_factory("--certfile", str(cert_path), "--keyfile", str(key_path))
    assert svc.ws_url.startswith("wss://127.0.0.1:")

    ws = await open_socket(svc.ws_url, token=svc.token("tess"), ssl=client_ssl_context(cert_path))
    try:
        assert (await join(ws))["status"] == "ok"
    finally:
        await ws.close()

    # A client that does not trust the certificate is refused by its own verification.
    with pytest.raises(ssl.SSLCertVerificationError):
        await open_socket(svc.ws_url, token=svc.token("tess"), ssl=ssl.create_default_context())

    # HTTP routes are on TLS too.
    url = f"https://127.0.0.1:{svc.port}/healthz"
    with urllib.request.urlopen(url, timeout=WAIT_S, context=client_ssl_context(cert_path)) as r:
        assert json.loads(r.read())["status"] == "ok"
    # `status` reads /healthz the same way, trusting the configured certificate.
    config = load_config({"certfile": str(cert_path), "keyfile": str(key_path)}, {})
    assert fetch_health(svc.ws_url, config)["status"] == "ok"


def test_missing_key_file_is_one_line_error(tmp_path, dev_cert):
    cert_path, _ = dev_cert
    out = service_cli(
        "run", "--port", "0", "--data-dir", str(tmp_path / "d"),
        "--certfile", str(cert_path), "--keyfile", str(tmp_path / "absent.pem"),
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        f"veraltheim-service: error: TLS file not found: {tmp_path / 'absent.pem'}"
    ]


def test_certfile_without_keyfile_is_a_config_error(tmp_path, dev_cert):
    cert_path, _ = dev_cert
    out = service_cli(
        "run", "--port", "0", "--data-dir", str(tmp_path), "--certfile", str(cert_path)
    )
    assert out.returncode == 2
    assert "certfile and keyfile must be given together" in out.stderr
    assert out.stderr.count("\n") == 1
