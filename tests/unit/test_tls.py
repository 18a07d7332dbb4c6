"""lpms.tls: loading certificates (a bad one is a clear error), reloading them, and the
acceptor that runs each TLS handshake and hands the connection on, against real TLS
clients on 127.0.0.1, on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from lpms import LPMS, Settings, TLSError, TLSSettings
from lpms.metrics import Metrics
from lpms.tls.acceptor import TLSHandshakes
from lpms.tls.certs import Certificates, server_context
from tests.certs import CertificateFiles, client_context, make_certificate, served_fingerprint

WAIT_S = 10.0


@pytest.fixture
def certificate(tmp_path: Path) -> CertificateFiles:
    return make_certificate(tmp_path)


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    """Runs a coroutine on a fresh loop of each kind the server supports."""
    if request.param == "asyncio":
        return asyncio.run
    uvloop = pytest.importorskip("uvloop")
    return uvloop.run  # type: ignore[no-any-return]


# -- loading -----------------------------------------------------------------------------


def test_a_certificate_and_its_key_load(certificate: CertificateFiles) -> None:
    context = server_context(str(certificate.cert), str(certificate.key))
    assert context.minimum_version.name == "TLSv1_2"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing cert", "cannot read TLS certificate {cert}: No such file"),
        ("missing key", "cannot read TLS private key {key}: No such file"),
        ("garbage cert", "TLS certificate {cert} holds no PEM certificate"),
        ("garbage key", "TLS private key {key} holds no PEM private key"),
        ("corrupt cert", "TLS certificate {cert} is not a valid PEM certificate"),
        ("corrupt key", "TLS key {key} is not a valid PEM private key"),
        ("other key", "TLS key {key} does not belong to the certificate {cert}"),
        ("encrypted key", "TLS key {key} is encrypted"),
    ],
)
def test_a_bad_certificate_or_key_is_an_error_naming_the_file(
    tmp_path: Path, certificate: CertificateFiles, breakage: str, message: str
) -> None:
    cert, key = certificate.cert, certificate.key
    corrupt = "-----BEGIN {0}-----\nAAAA\n-----END {0}-----\n"
    if breakage == "missing cert":
        cert = tmp_path / "nothing.crt"
    elif breakage == "missing key":
        key = tmp_path / "nothing.key"
    elif breakage == "garbage cert":
        cert.write_bytes(b"\x00garbage" * 50)
    elif breakage == "garbage key":
        key.write_text("not a key\n")
    elif breakage == "corrupt cert":
        cert.write_text(corrupt.format("CERTIFICATE"))
    elif breakage == "corrupt key":
        key.write_text(corrupt.format("PRIVATE KEY"))
    elif breakage == "other key":
        key = make_certificate(tmp_path, "other").key
    elif breakage == "encrypted key":
        key = tmp_path / "encrypted.key"
        encrypt = ["pkey", "-in", str(certificate.key), "-aes256", "-passout", "pass:secret"]
        openssl = shutil.which("openssl")
        assert openssl is not None
        subprocess.run([openssl, *encrypt, "-out", str(key)], check=True, capture_output=True)
    with pytest.raises(TLSError) as raised:
        server_context(str(cert), str(key))
    assert message.format(cert=cert, key=key) in str(raised.value)


def test_the_server_does_not_start_with_a_bad_certificate(
    tmp_path: Path, certificate: CertificateFiles
) -> None:
    certificate.cert.write_text("garbage\n")
    tls = TLSSettings(cert=str(certificate.cert), key=str(certificate.key), rtmps_port=0)
    server = LPMS(host="127.0.0.1", rtmp_port=0, http_port=0, settings=Settings(tls=tls))

    async def start() -> None:
        with pytest.raises(TLSError, match=str(certificate.cert)):
            await server.start()
        assert server.rtmp_port == 0  # nothing was opened
        assert server._http_runner is None

    asyncio.run(start())


def test_a_cert_without_a_key_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="cert is given without key"):
        TLSSettings(cert="server.crt")


# -- reloading ---------------------------------------------------------------------------


def test_reload_swaps_the_context_and_a_bad_file_keeps_the_old_one(
    tmp_path: Path, certificate: CertificateFiles
) -> None:
    certificates = Certificates(str(certificate.cert), str(certificate.key))
    first = certificates.context
    fresh = make_certificate(tmp_path, "fresh")
    shutil.copy(fresh.cert, certificate.cert)
    shutil.copy(fresh.key, certificate.key)
    assert certificates.reload()
    second = certificates.context
    assert second is not first

    certificate.key.write_text("garbage\n")
    assert not certificates.reload()
    assert certificates.context is second


# -- the acceptor ------------------------------------------------------------------------


class Echo(asyncio.Protocol):
    """Sends back what it receives, prefixed with whether it came over TLS."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        over_tls = transport.get_extra_info("sslcontext") is not None
        self.transport.write(b"tls:" if over_tls else b"plain:")

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.transport.close()
        return False


@asynccontextmanager
async def echo_server(
    certificates: Certificates, metrics: Metrics, **settings: Any
) -> AsyncIterator[tuple[int, TLSHandshakes]]:
    """An echo server behind the TLS acceptor: its port, and its handshakes."""
    tls = TLSSettings(cert="-", key="-", **settings)
    handshakes = TLSHandshakes(certificates, tls, "rtmps", metrics)
    server = await asyncio.get_running_loop().create_server(handshakes.wrap(Echo), "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1]), handshakes
    finally:
        server.close()
        handshakes.close()
        await server.wait_closed()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    received = b""
    async with asyncio.timeout(WAIT_S):
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except ConnectionError:
            pass
    return received


def closed(metrics: Metrics, reason: str) -> float:
    return metrics.value("lpms_connections_closed_total", protocol="rtmps", reason=reason)


def test_a_tls_client_reaches_the_inner_protocol_with_its_first_bytes(
    certificate: CertificateFiles, run: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    certificates = Certificates(str(certificate.cert), str(certificate.key))
    metrics = Metrics()

    async def main() -> None:
        async with echo_server(certificates, metrics) as (port, _):
            for _ in range(20):  # the first bytes race the handover: try it often
                async with asyncio.timeout(WAIT_S):
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", port, ssl=client_context()
                    )
                writer.write(b"hello")  # at once, before the server's first word
                await writer.drain()
                async with asyncio.timeout(WAIT_S):
                    assert await reader.readexactly(9) == b"tls:hello"
                writer.close()
            assert await served_fingerprint(port) == certificate.fingerprint

    run(main())
    assert closed(metrics, "tls_handshake") == 0


Opened = tuple[asyncio.StreamReader, list[asyncio.StreamWriter]]


async def garbage_first(port: int) -> Opened:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x03" + b"not a ClientHello" * 100)  # a plain RTMP client, say
    return reader, [writer]


async def silent(port: int) -> Opened:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return reader, [writer]


async def one_too_many(port: int) -> Opened:
    _, first = await asyncio.open_connection("127.0.0.1", port)  # holds the one handshake
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return reader, [writer, first]


@pytest.mark.parametrize(
    ("client", "settings", "reason"),
    [
        (garbage_first, {}, "tls_handshake"),
        (silent, {"handshake_timeout": 0.3}, "tls_handshake_timeout"),
        (one_too_many, {"max_handshakes": 1}, "max_handshakes"),
    ],
)
def test_a_client_that_does_not_shake_hands_is_closed_and_counted(
    certificate: CertificateFiles,
    run: Callable[[Coroutine[Any, Any, None]], None],
    client: Callable[[int], Coroutine[Any, Any, Opened]],
    settings: dict[str, Any],
    reason: str,
) -> None:
    certificates = Certificates(str(certificate.cert), str(certificate.key))
    metrics = Metrics()

    async def main() -> None:
        async with echo_server(certificates, metrics, **settings) as (port, _):
            reader, writers = await client(port)
            assert await read_until_closed(reader) == b""
            for writer in writers:
                writer.close()

    run(main())
    assert closed(metrics, reason) == 1


def test_a_peer_that_leaves_before_the_handshake_is_not_counted(
    certificate: CertificateFiles, run: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    """A TCP health check: lpms closed nothing of its own."""
    certificates = Certificates(str(certificate.cert), str(certificate.key))
    metrics = Metrics()

    async def main() -> None:
        async with echo_server(certificates, metrics, handshake_timeout=WAIT_S) as (port, shakes):
            for _ in range(10):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT_S / 2  # well before the handshake timeout
            while shakes.pending:
                assert loop.time() < deadline, f"{len(shakes.pending)} handshakes still wait"
                await asyncio.sleep(0.01)
            assert await served_fingerprint(port) == certificate.fingerprint

    run(main())
    counted = metrics.render().decode()
    assert "lpms_connections_closed_total{" not in counted, counted


def test_a_reload_applies_to_the_next_connection(
    tmp_path: Path,
    certificate: CertificateFiles,
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    certificates = Certificates(str(certificate.cert), str(certificate.key))
    fresh = make_certificate(tmp_path, "fresh")

    async def main() -> None:
        async with echo_server(certificates, Metrics()) as (port, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context())
            assert await served_fingerprint(port) == certificate.fingerprint
            certificates.cert, certificates.key = str(fresh.cert), str(fresh.key)
            assert certificates.reload()
            assert await served_fingerprint(port) == fresh.fingerprint
            writer.write(b"still here")  # the connection made before goes on
            async with asyncio.timeout(WAIT_S):
                assert await reader.readexactly(14) == b"tls:still here"
            writer.close()

    run(main())
