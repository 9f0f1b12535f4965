"""TLS and mTLS for function servers and clients (docs/security.md, "TLS and mTLS").

    serve(functions, "127.0.0.1:7001", tls_cert="fn.crt", tls_key="fn.key",
          tls_ca="ca.crt", require_client_cert=True)        # mTLS function server
    Client("127.0.0.1:7070", tls_ca="ca.crt")                # TLS ingress
    Client("127.0.0.1:7070", tls_ca="ca.crt", tls_cert="c.crt", tls_key="c.key")  # mTLS

The files are PEM, read when the server or client is made; a function
server started with serve() re-reads its own on SIGHUP. Every
problem is a ValueError naming the file and what is wrong with it: missing
or unreadable, no certificate in it, a key that does not belong to its
certificate. The CA is always given explicitly for a client: the system's
public roots are never used to verify a statemesh runtime.
"""

import ssl
import threading

import grpc

__all__ = ["server_credentials", "channel_credentials", "ReloadableServerCredentials"]

_MAX_PEM_BYTES = 1024 * 1024


def _read(path, what):
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_PEM_BYTES + 1)
    except OSError as e:
        raise ValueError("%s %s: cannot read: %s" % (what, path, e.strerror)) from None
    if len(data) > _MAX_PEM_BYTES:
        raise ValueError("%s %s: over the limit of %d bytes for a PEM file"
                         % (what, path, _MAX_PEM_BYTES))
    return data


def _check_cert(data, path, what):
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError("%s %s: no PEM certificate in it (\"-----BEGIN CERTIFICATE-----\")"
                         % (what, path))


def _check_pair(cert, key):
    """The key must be the certificate's (the ssl module's own check)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e) or "key values mismatch" in str(e):
            raise ValueError("tls_key %s: does not match the certificate in %s"
                             % (key, cert)) from None
        raise ValueError("tls_cert %s / tls_key %s: %s" % (cert, key, e.reason or e)) from None


def _server_config(cert, key, ca):
    """The files, read and checked, as a grpc.ServerCertificateConfiguration."""
    cert_pem = _read(cert, "tls_cert")
    _check_cert(cert_pem, cert, "tls_cert")
    key_pem = _read(key, "tls_key")
    _check_pair(cert, key)
    ca_pem = None
    if ca:
        ca_pem = _read(ca, "tls_ca")
        _check_cert(ca_pem, ca, "tls_ca")
    # gRPC's reload path wants roots even when no client certificate is
    # asked for (then they are never used): the server's own chain stands in.
    return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)],
                                                     root_certificates=ca_pem or cert_pem)


class ReloadableServerCredentials:
    """Server credentials whose files can be re-read (``reload()``) while
    serving: every TLS handshake after a successful reload uses the new
    certificate; connections already open are not touched. A reload whose
    files are bad raises ValueError and changes nothing."""

    def __init__(self, cert, key, ca=None, require_client_cert=False):
        if not cert or not key:
            raise ValueError("a TLS server needs tls_cert and tls_key")
        if require_client_cert and not ca:
            raise ValueError("require_client_cert needs tls_ca: the CA client certificates "
                             "are verified against")
        self._files = (cert, key, ca)
        self._lock = threading.Lock()
        self._pending = None
        self.credentials = grpc.dynamic_ssl_server_credentials(
            _server_config(cert, key, ca), self._fetch,
            require_client_authentication=bool(require_client_cert))

    def _fetch(self):
        # Called by gRPC before every new handshake: the new config once.
        with self._lock:
            cfg, self._pending = self._pending, None
        return cfg

    def reload(self):
        cfg = _server_config(*self._files)
        with self._lock:
            self._pending = cfg


def server_credentials(cert, key, ca=None, require_client_cert=False):
    """grpc.ServerCredentials for a function server. ``ca`` with
    ``require_client_cert=True`` is mTLS: clients (the runtime) must present
    a certificate signed by ``ca``."""
    return ReloadableServerCredentials(cert, key, ca, require_client_cert).credentials


def channel_credentials(ca, cert=None, key=None):
    """grpc.ChannelCredentials for a client: the server's certificate is
    verified against ``ca``; ``cert`` + ``key`` present a client certificate."""
    if not ca:
        raise ValueError("TLS needs tls_ca: the CA that signed the server's certificate")
    if bool(cert) != bool(key):
        raise ValueError("tls_cert and tls_key go together")
    ca_pem = _read(ca, "tls_ca")
    _check_cert(ca_pem, ca, "tls_ca")
    cert_pem = key_pem = None
    if cert:
        cert_pem = _read(cert, "tls_cert")
        _check_cert(cert_pem, cert, "tls_cert")
        key_pem = _read(key, "tls_key")
        _check_pair(cert, key)
    return grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem,
                                        certificate_chain=cert_pem)


def check_address(address):
    """TLS is for TCP: a unix socket stays plain."""
    if address.startswith("unix"):
        raise ValueError("TLS is for host:port addresses; %s is a unix socket, which stays "
                         "plain" % address)
