"""``edge api``: serve the HTTP API and the live dashboard (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import sys

from . import Subparsers
from .common import check_endpoint, endpoint_arg, load_app_config, readable_file, tcp_port


def dashboard_url(host: str, port: int, token: str) -> str:
    """The dashboard link carrying the token in the fragment: the browser keeps it in
    sessionStorage and drops it from the address bar; a fragment never reaches a server log.
    Port 0 (any free port) is not known before the API binds: its log line ``api_ready`` says."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port or '<port of api_ready in the API log>'}/#token={token}"


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "api", help="serve the HTTP API and the live dashboard",
        description="Serve the HTTP API and dashboard. Binds 127.0.0.1:8080 by default; any other bind "
                    "needs a token (api.token, api.token_file or $EDGE_API_TOKEN). Writes always need the "
                    "token: without a configured one it is generated into <data_dir>/.api-token (0600).")
    parser.add_argument("--config", type=readable_file, help="appliance config file (default: configs/sim.toml)")
    parser.add_argument("--host", help="bind address (default: api.host, 127.0.0.1)")
    parser.add_argument("--port", type=tcp_port, help="TCP port (default: api.port, 8080)")
    parser.add_argument("--endpoint", type=endpoint_arg,
                        help="broker endpoint (default: $EDGE_ENDPOINT, else from the config)")
    parser.add_argument("--data-dir", help="override [broker] data_dir (exports go to <data_dir>/exports)")
    parser.add_argument("--print-url", action="store_true",
                        help="print the dashboard URL with the API token (the generated <data_dir>/.api-token "
                             "unless one is configured) and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from edge.api.server import run_api
    from edge.third_party_logs import fold_uvicorn_logs

    fold_uvicorn_logs()
    config = load_app_config(args)
    if args.print_url:
        from edge.api.config import ApiConfigError
        from edge.api.server import resolve_api_config

        api = resolve_api_config(config, args.host, args.port)
        try:
            print(dashboard_url(api.host, api.port, api.token_for(config.broker.data_dir)))
        except ApiConfigError as exc:
            print(f"edge api: {exc.message}", file=sys.stderr)
            return 2
        return 0
    endpoint = args.endpoint or os.environ.get("EDGE_ENDPOINT") or None
    if endpoint:
        check_endpoint(endpoint, "--endpoint" if args.endpoint else "$EDGE_ENDPOINT")
    return run_api(config, host=args.host, port=args.port, endpoint=endpoint)
