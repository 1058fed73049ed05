"""Security: token enforcement (HTTP and WebSocket; writes always, reads off loopback or when
configured), the generated token file, refusal to start a public bind without a token,
DNS-rebinding and cross-origin guards, and no path or topic injection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from starlette.datastructures import Headers

from edge.api.config import TOKEN_FILE_NAME, ApiConfig, ApiConfigError, is_loopback, read_or_create_token
from edge.api.security import AccessGuard
from edge.api.server import run_api
from tests.api.conftest import WRITE_TOKEN, start_env, stop_env
from tests.api.support import app_config

TOKEN = "s3cret-token-for-tests-0123456789"
EDGE = str(Path(sys.executable).parent / "edge")


@pytest.fixture(scope="module")
def token_env(tmp_path_factory):
    env = start_env(tmp_path_factory.mktemp("api-token"), token=TOKEN, cameras=("front",), open_reads=False)
    yield env
    stop_env(env)


def _assert_json_refusal(resp, status: int) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert body["error"] and body["message"] and "Traceback" not in resp.text


# -- bind policy ---------------------------------------------------------------------------

@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.10", False), ("vehicle.local", False)])
def test_loopback_detection(host, loopback):
    assert is_loopback(host) is loopback


def test_public_bind_needs_a_long_enough_token(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGE_API_TOKEN", raising=False)
    assert ApiConfig().check_bind() is None
    with pytest.raises(ApiConfigError, match="needs a token"):
        ApiConfig(host="0.0.0.0").check_bind()
    with pytest.raises(ApiConfigError, match="at least 16"):
        ApiConfig(host="0.0.0.0", token="short").check_bind()
    assert ApiConfig(host="0.0.0.0", token=TOKEN).check_bind() == TOKEN
    monkeypatch.setenv("EDGE_API_TOKEN", TOKEN)
    assert ApiConfig(host="0.0.0.0").check_bind() == TOKEN
    monkeypatch.delenv("EDGE_API_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert ApiConfig(host="10.0.0.2", token_file=token_file).check_bind() == TOKEN
    with pytest.raises(ApiConfigError, match="cannot read"):
        ApiConfig(host="10.0.0.2", token_file=tmp_path / "missing").check_bind()
    assert "s3cret" not in repr(ApiConfig(token=TOKEN))  # never printed by accident


def test_run_api_refuses_public_bind_without_token(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGE_API_TOKEN", raising=False)
    config = app_config(tmp_path, "ipc:///nonexistent/broker.sock", [])
    assert run_api(config, host="0.0.0.0", port=0, configure_logging=False) == 2


def test_edge_api_command_refuses_public_bind_without_token(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "EDGE_API_TOKEN"}
    proc = subprocess.run([EDGE, "api", "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True,
                          timeout=30, env=env, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "needs a token" in proc.stderr


# -- token enforcement ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/status", "/api/topics", "/api/topics/camera.front/latest.jpg",
                                  "/api/topics/camera.front/records", "/api/jobs", "/metrics",
                                  "/api/topics/camera.front/partitions/0/records/0/value"])
def test_token_required_on_every_api_route(token_env, path):
    _assert_json_refusal(token_env.get(path), 401)
    _assert_json_refusal(token_env.get(path, headers={"Authorization": "Bearer wrong-token-0123456789"}), 401)
    _assert_json_refusal(token_env.get(path, params={"token": TOKEN[:-1]}), 401)
    assert token_env.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert token_env.get(path, params={"token": TOKEN}).status_code == 200


def test_token_required_for_jobs_post(token_env):
    body = {"topics": ["camera.front"], "start": "-10s"}
    _assert_json_refusal(token_env.post("/api/jobs/export", json=body, with_token=False), 401)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/", "/static/app.js", "/openapi.json"])
def test_public_paths_carry_no_data(token_env, path):
    assert token_env.get(path).status_code == 200


def test_websocket_needs_the_token(token_env):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    base = token_env.url.replace("http://", "ws://") + "/api/live"
    for url, headers in ((base, None), (base + "?token=wrong", None),
                         (base, {"Authorization": "Bearer nope-nope-nope-nope"})):
        with pytest.raises(InvalidStatus) as info, connect(url, open_timeout=5, additional_headers=headers):
            pass
        assert info.value.response.status_code == 403
    with connect(base + f"?token={TOKEN}", open_timeout=5) as ws:
        assert '"hello"' in ws.recv(timeout=5)
    with connect(base, open_timeout=5, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert '"hello"' in ws.recv(timeout=5)


# -- writes need the token even on loopback; reads stay open there (the default) ---------

def test_reads_open_on_loopback_but_writes_need_the_token(api_env):
    assert api_env.get("/api/status").status_code == 200
    assert api_env.get("/metrics").status_code == 200
    body = {"topics": ["camera.front"], "start": "-10s"}
    for path in ("/api/jobs/export", "/api/jobs/replay", "/api/jobs/nope-1/cancel"):
        refused = api_env.post(path, json=body, with_token=False)
        _assert_json_refusal(refused, 401)
        assert "needs the API token" in refused.json()["message"]
        _assert_json_refusal(api_env.post(path, json=body, with_token=False,
                                          headers={"Authorization": "Bearer wrong-token-0123456789"}), 401)
    assert api_env.post("/api/jobs/export", json=body).status_code == 202
    # every state-changing method, routed or not, is refused before it reaches a route
    for method in ("PUT", "PATCH", "DELETE"):
        resp = requests.request(method, api_env.url + "/api/topics/camera.front", timeout=10)
        _assert_json_refusal(resp, 401)


def _guard_verdict(guard: AccessGuard, method: str, path: str, headers: dict[str, str]):
    scope = {"type": "http", "method": method, "path": path, "query_string": b""}
    return guard.problem(scope, Headers(headers=headers))


def test_writes_refused_when_no_token_exists():
    guard = AccessGuard(None, token=None)
    local = {"host": "127.0.0.1:8080"}
    assert _guard_verdict(guard, "GET", "/api/status", local) is None
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert _guard_verdict(guard, method, "/api/jobs/export", local)[0] == 401
    assert _guard_verdict(guard, "POST", "/api/jobs/export", {**local, "authorization": "Bearer anything"})[0] == 401


def test_open_reads_only_on_a_loopback_bind():
    assert ApiConfig().open_reads() is True
    assert ApiConfig(open_loopback_reads=False).open_reads() is False
    assert ApiConfig(host="0.0.0.0", token=TOKEN).open_reads() is False
    closed = AccessGuard(None, token=TOKEN, open_reads=False)
    assert _guard_verdict(closed, "GET", "/api/status", {"host": "127.0.0.1"})[0] == 401
    assert _guard_verdict(closed, "GET", "/api/status", {"host": "x", "authorization": f"Bearer {TOKEN}"}) is None


def test_generated_token_file_is_private_and_stable(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGE_API_TOKEN", raising=False)
    path = tmp_path / "state" / TOKEN_FILE_NAME
    token = read_or_create_token(path)
    assert len(token) >= 32 and (path.stat().st_mode & 0o777) == 0o600
    assert read_or_create_token(path) == token
    assert ApiConfig().token_for(tmp_path / "state") == token
    assert ApiConfig(token=TOKEN).token_for(tmp_path / "state") == TOKEN  # a configured token wins
    path.chmod(0o644)
    assert read_or_create_token(path) == token and (path.stat().st_mode & 0o777) == 0o600
    path.write_text("short\n")
    with pytest.raises(ApiConfigError, match="fewer than 16"):
        read_or_create_token(path)
    assert not [p.name for p in path.parent.iterdir() if p.name != TOKEN_FILE_NAME]  # no temp file left


# -- host and origin guards (open reads on loopback) ---------------------------------------

def test_dns_rebinding_guard(api_env):
    _assert_json_refusal(api_env.get("/api/status", headers={"Host": "evil.example.com"}), 403)
    _assert_json_refusal(api_env.get("/api/status", headers={"Host": "evil.example.com:8080"}), 403)
    assert api_env.get("/api/status", headers={"Host": "localhost:1234"}).status_code == 200
    # the token proves more than any Host header: a tunnel or proxy may use any name
    assert api_env.get("/api/status", headers={"Host": "evil.example.com",
                                               "Authorization": f"Bearer {WRITE_TOKEN}"}).status_code == 200


def test_cross_origin_writes_and_websockets_refused(api_env):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    body = {"topics": ["camera.front"], "start": "-10s"}
    _assert_json_refusal(api_env.post("/api/jobs/export", json=body,
                                      headers={"Origin": "https://evil.example.com"}), 403)
    host = api_env.url.removeprefix("http://")
    assert api_env.post("/api/jobs/export", json=body, headers={"Origin": f"http://{host}"}).status_code == 202
    with pytest.raises(InvalidStatus), connect(api_env.url.replace("http://", "ws://") + "/api/live",
                                               open_timeout=5, origin="https://evil.example.com"):
        pass


# -- injection -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/api/topics/..%2F..%2Fetc%2Fpasswd/records",
    "/api/topics/%2E%2E/records",
    "/api/topics/_groups",
    "/api/topics/a.deleted/records",
    "/api/topics/.hidden",
    "/api/topics/-dash",
    "/api/topics/a%00b",
    "/api/topics/" + "x" * 300,
    "/api/topics/camera.front%2F..%2F..%2Fbroker.sock/latest.jpg",
    "/api/jobs/..%2F..%2Fetc/files/passwd",
    "/api/jobs/x/files/..%2F..%2Fetc%2Fpasswd",
    "/api/jobs/x/files/.ssh",
    "/static/..%2F..%2Fconfig.py",
    "/static/../app.py",
])
def test_path_and_topic_injection_refused(api_env, path):
    resp = requests.get(api_env.url + path, timeout=10)
    assert 400 <= resp.status_code < 500, (path, resp.status_code)
    assert "root:" not in resp.text and "import " not in resp.text and "Traceback" not in resp.text
    if resp.headers.get("content-type", "").startswith("application/json"):
        assert resp.json()["message"]


def test_no_topic_is_created_by_reads(api_env):
    before = set(api_env.get("/api/topics").json())
    for name in ("ghost.one", "ghost.two"):
        assert api_env.get(f"/api/topics/{name}/records").status_code == 404
        assert api_env.get(f"/api/topics/{name}/latest.jpg").status_code == 404
    from broker.client import Admin

    with Admin(api_env.endpoint) as admin:
        assert not {"ghost.one", "ghost.two"} & set(admin.list_topics())
    assert not {"ghost.one", "ghost.two"} & before


def test_internal_errors_carry_no_detail(api_env, monkeypatch):
    monitor = api_env.app.state.edge.monitor

    def boom():
        raise RuntimeError("secret detail /etc/shadow")

    monkeypatch.setattr(monitor, "history", boom)
    resp = api_env.get("/api/status/history")
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal", "message": "internal error; see the API log"}
