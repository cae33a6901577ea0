"""`commhub api --config FILE`: serve the operator API with uvicorn."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

from api.app import create_app
from commhub.config import load

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `commhub api`."""
    parser.add_argument("--config", default=str(REPO / "configs" / "commhub.yaml"), help="configuration file")
    parser.add_argument("--host", default=None, help="bind address (default: api.host)")
    parser.add_argument("--port", type=int, default=None, help="port (default: api.port)")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    cfg = load(args.config)
    host = args.host or cfg.api.host
    port = cfg.api.port if args.port is None else args.port
    app = create_app(cfg)
    log.info("operator API on http://%s:%d/ (OpenAPI docs at /docs)", host, port)
    # No access log: the SSE stream may carry a token in its query string, and the audit log records requests.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", timeout_graceful_shutdown=5)
    return 0
