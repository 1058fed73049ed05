"""The ``[api]`` section of the appliance config: where the HTTP API binds and who may use it.

Guarantees:
- The default bind is loopback (127.0.0.1:8080). Any other bind needs a token (from
  ``token``, ``token_file`` or ``$EDGE_API_TOKEN``) of at least 16 characters:
  ``ApiConfig.check_bind()`` raises ``ApiConfigError`` otherwise and ``edge api`` refuses to
  start.
- Writes always need a token, so the API always has one: the configured one, else the
  generated ``<data_dir>/.api-token`` (``read_or_create_token``: 32 random URL-safe
  characters, file mode 0600, published with a hard link so two processes racing to
  create it end up with the same token). Reads on a loopback bind are open without it
  while ``open_loopback_reads`` is true (the default).
- Unknown keys are errors, like every other section. Durations accept "500ms" / "2s".
- No setting here takes a path from a request: ``export_dir`` is the only place jobs write.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from broker.base.units import parse_duration_ns
from broker.errors import InvalidConfigError

TOKEN_ENV = "EDGE_API_TOKEN"
TOKEN_FILE_NAME = ".api-token"  # in the data directory; "." so no topic can take the name
TOKEN_FILE_MODE = 0o600
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

    enabled: bool = Field(default=True, description="run the API as part of `edge up`")
    host: str = Field(default="127.0.0.1", min_length=1, description="bind address; non-loopback needs a token")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0: any free port)")
    token: SecretStr | None = Field(default=None, description=f"access token; default ${TOKEN_ENV}")
    token_file: Path | None = Field(default=None, description="file holding the token (e.g. a systemd credential)")
    open_loopback_reads: bool = Field(
        default=True, description="on a loopback bind, serve reads (GET, live view, /metrics) without the token; "
                          "writes always need it")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="extra Host header names accepted without a token (DNS-rebinding guard on loopback)",
    )
    status_interval: Seconds = Field(default=1.0, gt=0.05, le=60,
                                     description="how often the status is sampled and pushed live")
    frame_fps: float = Field(default=10.0, gt=0, le=60, description="max camera frames per second per live client")
    history: int = Field(default=120, ge=2, le=3600, description="samples kept per topic for the rate sparklines")
    export_dir: Path | None = Field(default=None, description="where export jobs write; default <data_dir>/exports")
    max_jobs: int = Field(default=2, ge=1, le=16, description="export/replay jobs running at once")
    browse_limit: int = Field(default=500, ge=1, le=10000, description="most records one browse request returns")
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

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

    def token_for(self, data_dir: Path) -> str:
        """The token to enforce: ``check_bind()``'s, else the data directory's generated one."""
        return self.check_bind() or read_or_create_token(Path(data_dir) / TOKEN_FILE_NAME)

    def open_reads(self) -> bool:
        """True when reads need no token: a loopback bind with ``open_loopback_reads``."""
        return self.open_loopback_reads and is_loopback(self.host)

    def resolved_export_dir(self, data_dir: Path) -> Path:
        return self.export_dir if self.export_dir is not None else Path(data_dir) / "exports"


def read_or_create_token(path: Path) -> str:
    """The token in ``path``; a new random one written there (0600) first if it is missing.
    Raises ApiConfigError when the file cannot be read or written or holds a short token."""
    from broker.storage.layout import fsync_dir

    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, TOKEN_FILE_MODE)
            try:
                os.write(fd, (secrets.token_urlsafe(24) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # atomic, and never replaces a token another process just made
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
            fsync_dir(path.parent)
        if path.stat().st_mode & 0o077:
            os.chmod(path, TOKEN_FILE_MODE)  # a token file readable by others is no secret
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ApiConfigError(f"api token file {path}: {exc.strerror or exc}") from None
    if len(token) < MIN_TOKEN_LENGTH:
        raise ApiConfigError(f"api token file {path} holds {len(token)} characters, fewer than {MIN_TOKEN_LENGTH}; "
                             "delete it and a new token is generated")
    return token
