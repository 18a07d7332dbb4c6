"""Self-signed certificates for TLS tests, made by the ``openssl`` command line tool, and
the fingerprint of the certificate a TLS server presents."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

OPENSSL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CertificateFiles:
    cert: Path
    key: Path

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate (DER), in hex."""
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(self.cert.read_text())).hexdigest()


def make_certificate(directory: Path, name: str = "server") -> CertificateFiles:
    """A fresh self-signed certificate for 127.0.0.1 and its unencrypted key, as
    ``NAME.crt`` and ``NAME.key`` in `directory`; skips the test without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed (apt-get install openssl)")
    files = CertificateFiles(directory / f"{name}.crt", directory / f"{name}.key")
    subprocess.run(
        [
            openssl,
            *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "2", "-subj", f"/CN=lpms test {name}"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(files.key), "-out", str(files.cert)),
        ],
        check=True,
        capture_output=True,
        timeout=OPENSSL_TIMEOUT_S,
    )
    return files


def client_context() -> ssl.SSLContext:
    """A client that takes any certificate (the tests' are self-signed)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def served_fingerprint(port: int, within: float = 10.0) -> str:
    """SHA-256 of the certificate the TLS server on 127.0.0.1:`port` presents."""
    async with asyncio.timeout(within):
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context())
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return hashlib.sha256(der).hexdigest()
