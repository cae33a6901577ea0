"""Evidence packages for police: a ZIP with a SHA-256 manifest, a chain-of-custody record and an Ed25519 signature.

Layout of a package:
  manifest.json   format, creation time, key id and public key, and {path, sha256, bytes} for every other file
  manifest.sig    the Ed25519 signature of manifest.json's exact bytes (base64)
  custody.json    who exported, with which role, when, why and from which address
  alert.json, timeline.json, events.json, access_log.json, snapshots/<device>/<id>.jpg (originals)
Verification trusts the hub's own public key when it is given one; the key inside a package only
identifies which key signed it (anyone can re-sign a forged package with a key of their own).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = "commhub-evidence/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_MAX_MEMBER = 64 * 1024 * 1024


class EvidenceKeyError(Exception):
    """The signing key cannot be read or has unsafe permissions."""


def key_id(public: Ed25519PublicKey) -> str:
    """A short fingerprint: the first 16 hex digits of the SHA-256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    """The public key as PEM (SubjectPublicKeyInfo)."""
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at `path`, generated on first use (file 0600 in a 0700 directory, written atomically)."""
    path = Path(path)
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise EvidenceKeyError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as e:
            raise EvidenceKeyError(f"{path} is not a PEM private key: {e}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise EvidenceKeyError(f"{path} is not an Ed25519 key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    try:
        # A second process that raced us keeps the key that won; ours is dropped.
        os.link(tmp, path)
    except FileExistsError:
        os.unlink(tmp)
        return load_or_create_key(path)
    os.unlink(tmp)
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """A public key from PEM, or from the private key file itself."""
    try:
        if b"PRIVATE KEY" in pem:
            priv = serialization.load_pem_private_key(pem, password=None)
            if not isinstance(priv, Ed25519PrivateKey):
                raise ValueError("not an Ed25519 key")
            return priv.public_key()
        pub = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise EvidenceKeyError(f"not an Ed25519 key: {e}") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise EvidenceKeyError("not an Ed25519 public key")
    return pub


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True, default=str).encode()


@dataclass
class Package:
    """The contents of one export before it is signed."""

    custody: Mapping[str, Any]
    alert: Mapping[str, Any]
    timeline: Sequence[Mapping[str, Any]]
    events: Sequence[Mapping[str, Any]]
    access_log: Sequence[Mapping[str, Any]]
    snapshots: dict[str, bytes] = field(default_factory=dict)  # "<device>/<id>.jpg" -> original bytes
    missing_snapshots: list[str] = field(default_factory=list)


def build_zip(pkg: Package, key: Ed25519PrivateKey, now: datetime | None = None) -> bytes:
    """The signed ZIP."""
    files: dict[str, bytes] = {
        "custody.json": _json(pkg.custody),
        "alert.json": _json(pkg.alert),
        "timeline.json": _json(list(pkg.timeline)),
        "events.json": _json(list(pkg.events)),
        "access_log.json": _json(list(pkg.access_log)),
    }
    for name, data in sorted(pkg.snapshots.items()):
        path = f"snapshots/{name}"
        if not _SAFE_PATH.match(path):
            raise ValueError(f"unsafe snapshot name {name!r}")
        files[path] = data
    manifest = {
        "format": FORMAT,
        "created_at": (now or datetime.now(UTC)).isoformat(),
        "key_id": key_id(key.public_key()),
        "public_key": base64.b64encode(key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode(),
        "missing_snapshots": sorted(pkg.missing_snapshots),
        "files": [{"path": p, "sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)}
                  for p, d in sorted(files.items())],
    }
    manifest_bytes = _json(manifest)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(MANIFEST, manifest_bytes, zipfile.ZIP_DEFLATED)
        z.writestr(SIGNATURE, base64.b64encode(key.sign(manifest_bytes)) + b"\n", zipfile.ZIP_STORED)
        for p, d in sorted(files.items()):
            z.writestr(p, d, zipfile.ZIP_STORED if p.endswith(".jpg") else zipfile.ZIP_DEFLATED)
    return buf.getvalue()


@dataclass
class Verdict:
    """What verify found: ok only when there is no problem."""

    problems: list[str] = field(default_factory=list)
    key_id: str | None = None
    trusted_key: bool = False
    files: int = 0
    custody: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def verify_zip(data: bytes, trusted: Ed25519PublicKey | None = None) -> Verdict:
    """Check the signature and every hash; every change (edited, added, removed file) is a problem."""
    v = Verdict()
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        v.problems.append(f"not a ZIP file: {e}")
        return v
    with z:
        names = [i.filename for i in z.infolist()]
        if len(set(names)) != len(names):
            v.problems.append("the ZIP holds the same path twice")
        for name in (MANIFEST, SIGNATURE):
            if name not in names:
                v.problems.append(f"{name} is missing")
        if v.problems:
            return v
        try:
            manifest_bytes = z.read(MANIFEST)
            manifest = json.loads(manifest_bytes)
            sig = base64.b64decode(z.read(SIGNATURE).strip(), validate=True)
            embedded = Ed25519PublicKey.from_public_bytes(base64.b64decode(manifest["public_key"]))
            listed = {f["path"]: (str(f["sha256"]), int(f["bytes"])) for f in manifest["files"]}
        except (ValueError, KeyError, TypeError, zipfile.BadZipFile, OSError, EOFError) as e:
            v.problems.append(f"manifest or signature is malformed: {type(e).__name__}")
            return v
        if manifest.get("format") != FORMAT:
            v.problems.append(f"unknown format {str(manifest.get('format'))[:40]!r}")
        key = trusted or embedded
        v.key_id, v.trusted_key = key_id(key), trusted is not None
        if trusted is not None and key_id(embedded) != key_id(trusted):
            v.problems.append(f"signed with key {key_id(embedded)}, not the trusted key {key_id(trusted)}")
        try:
            key.verify(sig, manifest_bytes)
        except InvalidSignature:
            v.problems.append("the signature does not match manifest.json")
        for name in names:
            if name in (MANIFEST, SIGNATURE):
                continue
            if name not in listed:
                v.problems.append(f"{name}: not in the manifest (added)")
                continue
            info = z.getinfo(name)
            if info.file_size > _MAX_MEMBER:
                v.problems.append(f"{name}: larger than {_MAX_MEMBER} bytes")
                continue
            try:
                content = z.read(name)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                # A byte changed inside a stored member breaks its CRC before our hash is even reached.
                v.problems.append(f"{name}: changed or damaged ({e})")
                continue
            digest, size = listed[name]
            if hashlib.sha256(content).hexdigest() != digest or len(content) != size:
                v.problems.append(f"{name}: changed (SHA-256 differs from the manifest)")
        for name in sorted(set(listed) - set(names)):
            v.problems.append(f"{name}: listed in the manifest but missing")
        v.files = len(listed)
        if "custody.json" in names and "custody.json" in listed:
            try:
                v.custody = json.loads(z.read("custody.json"))
            except (ValueError, zipfile.BadZipFile, OSError, EOFError):
                v.problems.append("custody.json is not JSON")
    return v
