"""The backup role's TLS certificates, derived from one secret: the same files on every render.

pgBackRest's TLS server wants a CA, a certificate per server naming the host it is reached
by, and a client certificate whose CN each server authorises. Every key here is an Ed25519
key derived with HKDF from the secret seed and a label, and every certificate has fixed
dates and a serial derived from its label; Ed25519 signatures are deterministic. So a
render is a pure function of the seed and the inventory (a config push sees no change when
nothing changed), nothing is stored besides the seed, and a new seed rotates them all.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from .backup import CLIENT_CN

_SALT = b"sentryfab backup tls v1"
# Fixed, so that a render never differs; the seed, not the date, is what rotates them.
_NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(2124, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Pem:
    """One certificate and its private key, PEM text."""

    cert: str
    key: str


def _seed_bytes(seed: str) -> bytes:
    if not seed:
        raise ValueError("the backup TLS seed is empty")
    return seed.encode()


def _key(seed: str, label: str) -> ed25519.Ed25519PrivateKey:
    raw = HKDF(hashes.SHA256(), 32, salt=_SALT, info=label.encode()).derive(_seed_bytes(seed))
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw)


def _serial(label: str) -> int:
    # Positive and at most 159 bits (RFC 5280 allows 20 octets).
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:19], "big") | 1


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _certificate(subject: str, label: str, key: ed25519.Ed25519PrivateKey,
                 issuer: x509.Name, signer: ed25519.Ed25519PrivateKey, *, ca: bool,
                 names: tuple[str, ...] = ()) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(_serial(label))
               .not_valid_before(_NOT_BEFORE).not_valid_after(_NOT_AFTER)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True))
    if names:
        # pgBackRest compares the host it connects to with these as text: an address is
        # listed as a name too, since that is what the inventory connects to.
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(signer, None)


@cache
def _ca(seed: str, cluster: str) -> tuple[ed25519.Ed25519PrivateKey, x509.Certificate]:
    key = _key(seed, "ca")
    subject = f"sentryfab {cluster} backup CA"
    return key, _certificate(subject, "ca", key, _name(subject), key, ca=True)


def ca_cert(seed: str, cluster: str) -> str:
    """The CA every server and the client trust (PEM)."""
    return _pem_cert(_ca(seed, cluster)[1])


@cache
def server(seed: str, cluster: str, host: str, address: str) -> Pem:
    """The certificate a host's pgBackRest server shows, naming the host and its address."""
    ca_key, ca = _ca(seed, cluster)
    label = f"server:{host}:{address}"
    key = _key(seed, label)
    names = tuple(dict.fromkeys((host, address)))
    cert = _certificate(host, label, key, ca.subject, ca_key, ca=False, names=names)
    return Pem(_pem_cert(cert), _pem_key(key))


@cache
def client(seed: str, cluster: str) -> Pem:
    """The one client certificate (CN sentryfab-backup) every pgBackRest client presents."""
    ca_key, ca = _ca(seed, cluster)
    key = _key(seed, "client")
    cert = _certificate(CLIENT_CN, "client", key, ca.subject, ca_key, ca=False)
    return Pem(_pem_cert(cert), _pem_key(key))
