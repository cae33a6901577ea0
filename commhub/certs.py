"""`commhub certs init`: a private CA, the broker's certificate and one client certificate per MQTT account.

Keys are EC P-256 (small, fast handshakes on small edge boxes); every private key is written 0600 and the
CA key never leaves the directory it was made in. Re-running keeps the CA and whatever already exists, so
adding an agent to the community adds its certificate without re-issuing the others.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from commhub.provision import accounts_for, load_for_provisioning, write_private

log = logging.getLogger(__name__)

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest leaf lifetime clients commonly accept


@dataclass(frozen=True, slots=True)
class Issued:
    """Paths of one certificate and its key."""

    cert: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_private(path, pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(path, 0o644)  # a certificate is public


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "commhub"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory: Path, cn: str = "commhub CA") -> Issued:
    """Create (or keep) a self-signed CA in directory as ca.crt / ca.key."""
    directory.mkdir(parents=True, exist_ok=True)
    issued = Issued(directory / "ca.crt", directory / "ca.key")
    if issued.cert.exists() and issued.key.exists():
        return issued
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(issued.key, key)
    _write_cert(issued.cert, cert)
    return issued


def _load_ca(ca: Issued) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key}: expected an EC key")
    return cert, key


def issue(ca: Issued, directory: Path, name: str, *, server_names: Sequence[str] = (),
          overwrite: bool = False) -> Issued:
    """Issue name.crt / name.key signed by the CA: a server certificate when server_names is given, else a client."""
    directory.mkdir(parents=True, exist_ok=True)
    out = Issued(directory / f"{name}.crt", directory / f"{name}.key")
    if out.cert.exists() and out.key.exists() and not overwrite:
        return out
    ca_cert, ca_key = _load_ca(ca)
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if server_names:
        sans: list[x509.GeneralName] = []
        for n in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        builder = (builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    _write_key(out.key, key)
    _write_cert(out.cert, builder.sign(ca_key, hashes.SHA256()))
    return out


def init(directory: Path, accounts: Iterable[str], broker_names: Sequence[str]) -> dict[str, Issued]:
    """The CA, a `broker` server certificate and one client certificate per account; returns them by name."""
    ca = make_ca(directory)
    issued = {"ca": ca, "broker": issue(ca, directory, "broker", server_names=broker_names)}
    for account in accounts:
        issued[account] = issue(ca, directory / "clients", account)
    return issued


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `commhub certs`."""
    sub = parser.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    p = sub.add_parser("init", help="create the CA, the broker certificate and one client certificate per account")
    p.add_argument("--config", required=True, help="commhub config (accounts come from its community and agents)")
    p.add_argument("--out", default="run/certs", help="directory for the CA, keys and certificates")
    p.add_argument("--simulator", action="store_true", help="also a certificate for the simulator's account")
    p.add_argument("--broker-name", action="append", default=[],
                   help="DNS name or IP the clients use for the broker (repeatable; default localhost, 127.0.0.1, "
                        "mosquitto)")


def run(args: argparse.Namespace) -> int:
    """Create what is missing and list it."""
    cfg = load_for_provisioning(args.config)
    names = args.broker_name or ["localhost", "127.0.0.1", "mosquitto"]
    out = Path(args.out)
    issued = init(out, [a.name for a in accounts_for(cfg, simulator=args.simulator)], names)
    log.info("certificates in %s: CA, broker (%s) and %d client certificates", out, ", ".join(names),
             len(issued) - 2)
    return 0
