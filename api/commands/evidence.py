"""`commhub evidence verify FILE.zip`: check an evidence package's hashes and signature, report every change."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from api.commands.common import REPO, emit
from api.data.evidence import EvidenceKeyError, load_public_key, verify_zip
from commhub.config import load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """verify FILE [--key PEM | --config FILE] [--json]."""
    sub = parser.add_subparsers(dest="action", required=True)
    v = sub.add_parser("verify", help="check the hashes and the signature of an evidence ZIP")
    v.add_argument("file", type=Path, help="the evidence ZIP")
    v.add_argument("--key", type=Path, help="trusted public key (PEM), e.g. from GET /api/v1/evidence/key")
    v.add_argument("--config", default=str(REPO / "configs" / "commhub.yaml"),
                   help="without --key: trust the signing key named in this configuration (api.evidence_key)")
    v.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """0 when the package is intact and signed by the trusted key, 1 when anything changed, 2 on bad input."""
    try:
        key_file = args.key or load(args.config).api.evidence_key
        trusted = load_public_key(Path(key_file).read_bytes())
        data = args.file.read_bytes()
    except (OSError, EvidenceKeyError) as e:
        print(f"evidence verify: {e}", file=sys.stderr)
        return 2
    v = verify_zip(data, trusted)
    lines = [f"{args.file}: {'OK' if v.ok else 'FAILED'} ({v.files} files, key {v.key_id})"]
    lines += [f"  - {p}" for p in v.problems]
    if v.custody:
        c = v.custody
        lines.append(f"  exported by {c.get('exported_by')} ({c.get('role')}) at {c.get('exported_at')} "
                     f"from {c.get('from_address')}: {c.get('reason')}")
    emit(args, {"ok": v.ok, "file": str(args.file), "files": v.files, "key_id": v.key_id,
                "problems": v.problems, "custody": v.custody}, "\n".join(lines))
    return 0 if v.ok else 1
