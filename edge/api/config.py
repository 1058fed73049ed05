"""The ``[api]`` section of the appliance config: where the HTTP API binds and who may use it.

Guarantees:
- The default bind is loopback (127.0.0.1:8080). Any other bind needs a token (from
  ``token``, ``token_file`` or ``$EDGE_API_TOKEN``) of at least 16 characters:
  ``ApiConfig.check_bind()`` raises ``ApiConfigError`` otherwise and ``edge api`` refuses to
  start.
- Unknown keys are errors, like every other section. Durations accept "500ms" / "2s".
- No setting here takes a path from a request: ``export_dir`` is the only place jobs write.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from broker.errors import InvalidConfigError
from broker.units import parse_duration_ns

TOKEN_ENV = "EDGE_API_TOKEN"
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _seconds(value: object) -> object:
    """Durations as strings ("500ms", "2s") or numbers of seconds."""
    if isinstance(value, str):
        return parse_duration_ns(value) / 1e9
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]


class ApiConfigError(InvalidConfigError):
    """The API cannot start with this configuration (e.g. a public bind without a token)."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the usual names of localhost; False for 0.0.0.0 and
    every other address or name (a name that resolves elsewhere is not loopback)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ApiConfig(BaseModel):
    """``[api]``: bind address, access token and the dashboard's live-update cadence."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = Field(True, description="run the API as part of `edge up`")
    host: str = Field("127.0.0.1", min_length=1, description="bind address; non-loopback needs a token")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0: any free port)")
    token: SecretStr | None = Field(None, description=f"access token; default ${TOKEN_ENV}")
    token_file: Path | None = Field(None, description="file holding the token (e.g. a systemd credential)")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="extra Host header names accepted without a token (DNS-rebinding guard on loopback)",
    )
    status_interval: Seconds = Field(1.0, gt=0.05, le=60,
                                     description="how often the status is sampled and pushed live")
    frame_fps: float = Field(10.0, gt=0, le=60, description="max camera frames per second per live client")
    history: int = Field(120, ge=2, le=3600, description="samples kept per topic for the rate sparklines")
    export_dir: Path | None = Field(None, description="where export jobs write; default <data_dir>/exports")
    max_jobs: int = Field(2, ge=1, le=16, description="export/replay jobs running at once")
    browse_limit: int = Field(500, ge=1, le=10000, description="most records one browse request returns")
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    def resolved_token(self) -> str | None:
        """The token from the config, else ``token_file``, else ``$EDGE_API_TOKEN``; None if none."""
        if self.token is not None and self.token.get_secret_value():
            return self.token.get_secret_value()
        if self.token_file is not None:
            try:
                text = self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ApiConfigError(f"api.token_file {self.token_file}: cannot read: {exc.strerror}") from None
            if text:
                return text
        env = os.environ.get(TOKEN_ENV, "").strip()
        return env or None

    def check_bind(self) -> str | None:
        """Validate the bind against the token policy; returns the token (None on loopback
        without one). Raises ApiConfigError when the API must not start."""
        token = self.resolved_token()
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            raise ApiConfigError(
                f"api token is {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`)"
            )
        if token is None and not is_loopback(self.host):
            raise ApiConfigError(
                f"refusing to bind the API to {self.host}: a non-loopback bind needs a token "
                f"(api.token, api.token_file or ${TOKEN_ENV})"
            )
        return token

    def resolved_export_dir(self, data_dir: Path) -> Path:
        return self.export_dir if self.export_dir is not None else Path(data_dir) / "exports"
