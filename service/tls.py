"""TLS for wss://: the server's SSLContext and a self-signed development certificate."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from veraltheim.service.config import ServiceConfig

DEV_CERT_NAME = "cert.pem"
DEV_KEY_NAME = "key.pem"
DEV_CERT_DAYS = 90
DEFAULT_DEV_HOSTS = ("localhost", "127.0.0.1", "::1")


class TLSConfigError(ValueError):
    """The certificate or key cannot be loaded; the message says which file and why."""


def server_ssl_context(config: ServiceConfig) -> ssl.SSLContext | None:
    """The context for the listening socket, or None when TLS is off."""
    if config.certfile is None or config.keyfile is None:
        return None
    for path in (config.certfile, config.keyfile):
        if not path.is_file():
            raise TLSConfigError(f"TLS file not found: {path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.certfile, config.keyfile)
    except (ssl.SSLError, OSError) as e:
        raise TLSConfigError(
            f"cannot load TLS certificate {config.certfile} with key {config.keyfile}: {e}"
        ) from None
    return context


def client_ssl_context(cafile: Path | None = None) -> ssl.SSLContext:
    """A verifying client context that also trusts `cafile` (e.g. a development certificate)."""
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_dev_cert(
    out_dir: Path, hosts: tuple[str, ...] | list[str] = DEFAULT_DEV_HOSTS, days: int = DEV_CERT_DAYS
) -> tuple[Path, Path]:
    """Write a self-signed certificate for `hosts` and its key (mode 0600); return both paths.

    The certificate is its own CA (basicConstraints CA:TRUE, path length 0) so a client can
    trust it with `cafile=cert.pem`; it is for development only.
    """
    hosts = tuple(dict.fromkeys(hosts)) or DEFAULT_DEV_HOSTS
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Veraltheim development"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / DEV_CERT_NAME, out_dir / DEV_KEY_NAME
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    os.chmod(key_path, 0o600)  # an existing file keeps its old mode through O_TRUNC
    return cert_path, key_path
