"""Schemathesis against the app's own OpenAPI schema, served by real uvicorn in front of a
real broker with live data: no request it generates (valid or not) gets a server error,
and every response matches the documented status codes, content types and schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from edge.api.app import create_app
from tests.api.conftest import FAKE_RUNNERS, start_env, stop_env
from tests.api.support import app_config

TOKEN = "fuzz-token-0123456789abcdef"


def _schema() -> dict:
    """The schema of an app like the one under test (building an app contacts no broker)."""
    config = app_config(Path("/nonexistent/data"), "ipc:///nonexistent/broker.sock", ["front"])
    return create_app(config).openapi()


schema = schemathesis.openapi.from_dict(_schema())


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory):
    """Token-protected, so that the auth checks mean something; jobs run a fake runner."""
    env = start_env(tmp_path_factory.mktemp("api-fuzz"), token=TOKEN, runners=FAKE_RUNNERS, cameras=("front",),
                    open_reads=False)
    yield env
    stop_env(env)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, fuzz_env):
    # Every check runs but "positive data acceptance": times ("-10m", ISO-8601, epoch ns) are
    # free-form strings and "offset or time, not both" cannot be said in OpenAPI, so a
    # schema-valid request may rightly get a 400 (documented, JSON, with the reason).
    case.call_and_validate(base_url=fuzz_env.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20,
                           excluded_checks=[positive_data_acceptance])
