"""``edge api``: serve the HTTP API and the live dashboard (FastAPI + uvicorn)."""

from __future__ import annotations

from .common import load_app_config


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "api", help="serve the HTTP API and the live dashboard",
        description="Serve the HTTP API and dashboard. Binds 127.0.0.1:8080 by default; any other bind "
                    "needs a token (api.token, api.token_file or $EDGE_API_TOKEN).")
    parser.add_argument("--config", help="appliance config file (default: configs/sim.toml)")
    parser.add_argument("--host", help="bind address (default: api.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default: api.port, 8080)")
    parser.add_argument("--endpoint", help="broker endpoint (default: $EDGE_ENDPOINT, else from the config)")
    parser.add_argument("--data-dir", help="override [broker] data_dir (exports go to <data_dir>/exports)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import os

    from edge.api.server import run_api

    config = load_app_config(args)
    endpoint = args.endpoint or os.environ.get("EDGE_ENDPOINT") or None
    return run_api(config, host=args.host, port=args.port, endpoint=endpoint)
