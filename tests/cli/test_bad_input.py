"""Every subcommand, walked from the argparse tree (a new command is covered without editing
this file), given bad flags, bad values, missing files and an unreachable broker: exit 2 for
usage errors, 1 for runtime failures, exactly one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from edge.cli import build_parser, main

EDGE = [sys.executable, "-m", "edge.cli"]
# long-running services: they wait for (and retry) the broker by design, so the unreachable
# case does not apply; their flags, values and files are still walked
SERVICES = {("up",), ("broker",), ("driver", "camera"), ("driver", "lidar"), ("mirror",), ("api",)}
REPORTS_REACHABILITY = {("doctor",)}  # an unreachable broker is one of its check lines, on stdout
FILE_OPTIONS = {"config", "value_file", "calibration", "config_file"}
MISSING = "/nonexistent-edge-test/file.toml"


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from leaves(sub, (*path, name))


def required_args(parser: argparse.ArgumentParser, out: str) -> list[str]:
    """The least argv that parses: required positionals and options filled in."""
    fill = {"out": out, "name": "x", "topics": "t", "file": __file__}
    argv: list[str] = []
    for action in parser._actions:
        if action.option_strings:
            if action.required or action.dest == "topics":  # replay needs --topics or --drive
                argv += [action.option_strings[0], fill.get(action.dest, "t")]
        elif action.nargs not in ("?", "*") or action.dest in fill:  # consume's TOPIC... (nargs *)
            argv.append(str(next(iter(action.choices))) if action.choices else fill.get(action.dest, "t"))
    return argv


def typed_options(parser: argparse.ArgumentParser):
    """(flag, bad value) for every option that takes a typed value or a choice."""
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.dest == "help":
            continue
        if action.choices:
            yield action.option_strings[0], "not-a-choice"
        elif action.type not in (None, str):
            yield action.option_strings[0], "not/a-value"


def has_option(parser: argparse.ArgumentParser, dest: str) -> bool:
    return any(a.dest == dest and a.option_strings for a in parser._actions)


ALL = list(leaves(build_parser()))


def assert_one_clear_line(stderr: str, rc: int, expected_rc: int | tuple[int, ...], what: str) -> str:
    expected = expected_rc if isinstance(expected_rc, tuple) else (expected_rc,)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert rc in expected, f"{what}: exit {rc}, expected {expected}\n{stderr}"
    assert "Traceback" not in stderr, f"{what}: traceback\n{stderr}"
    assert len(lines) == 1, f"{what}: expected one line on stderr, got {len(lines)}\n{stderr}"
    return lines[0]


@pytest.fixture
def in_process(capsys):
    """Run ``edge.cli.main`` here (parse errors need no subprocess); keep our umask."""
    saved = os.umask(0o022)
    os.umask(saved)

    def run(argv: list[str]) -> tuple[int, str]:
        capsys.readouterr()
        rc = main(argv)
        return rc, capsys.readouterr().err

    yield run
    os.umask(saved)


def test_the_walk_sees_every_command():
    names = {path for path, _ in ALL}
    assert {("topics", "create"), ("consume",), ("produce",), ("status",), ("api",), ("driver", "lidar")} <= names
    assert len(names) >= 15


def test_unknown_flag_is_one_usage_line_for_every_command(in_process, tmp_path):
    for path, parser in ALL:
        argv = [*path, *required_args(parser, str(tmp_path / "out.mcap")), "--no-such-flag"]
        rc, err = in_process(argv)
        line = assert_one_clear_line(err, rc, 2, " ".join(argv))
        assert "--no-such-flag" in line and "--help" in line


def test_bad_value_of_every_typed_option_is_one_usage_line(in_process, tmp_path):
    checked = 0
    for path, parser in ALL:
        base = [*path, *required_args(parser, str(tmp_path / "out.mcap"))]
        for flag, bad in typed_options(parser):
            rc, err = in_process([*base, flag, bad])
            line = assert_one_clear_line(err, rc, 2, " ".join([*base, flag, bad]))
            assert flag in line and bad in line, line
            checked += 1
    assert checked >= 30


def test_endpoint_without_scheme_is_refused_by_every_command(in_process, tmp_path):
    for path, parser in ALL:
        if not has_option(parser, "endpoint"):
            continue
        argv = [*path, *required_args(parser, str(tmp_path / "out.mcap")), "--endpoint", "localhost:9092"]
        rc, err = in_process(argv)
        line = assert_one_clear_line(err, rc, 2, " ".join(argv))
        assert "tcp://localhost:9092" in line  # says what to write instead


def _run(argv: list[str], env: dict, timeout: float = 30) -> tuple[list[str], int, str]:
    try:
        done = subprocess.run([*EDGE, *argv], input=b"x\n", capture_output=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return argv, -1, f"no exit within {timeout:.0f}s"
    return argv, done.returncode, done.stderr.decode("utf-8", "replace")


def _run_all(cases: list[list[str]], env: dict):
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda argv: _run(argv, env), cases))


def test_unreachable_broker_is_a_bounded_wait_then_one_runtime_line(tmp_path):
    endpoint = f"ipc://{tmp_path}/nobody.sock"
    env = {k: v for k, v in os.environ.items() if k != "EDGE_ENDPOINT"}
    cases = [[*path, *required_args(parser, str(tmp_path / "out.mcap")), "--endpoint", endpoint]
             for path, parser in ALL if has_option(parser, "endpoint") and path not in SERVICES | REPORTS_REACHABILITY]
    assert len(cases) >= 8
    for argv, rc, err in _run_all(cases, env):
        line = assert_one_clear_line(err, rc, 1, " ".join(argv))
        assert "not reachable" in line and endpoint in line, line


def test_missing_files_are_one_line_for_every_command(tmp_path):
    env = {**os.environ, "EDGE_ENDPOINT": f"ipc://{tmp_path}/nobody.sock"}
    cases = []
    for path, parser in ALL:
        base = [*path, *required_args(parser, str(tmp_path / "out.mcap"))]
        for action in parser._actions:
            if action.option_strings and action.dest in FILE_OPTIONS:
                flag = next(f for f in action.option_strings if f.startswith("--"))
                cases.append([*base, flag, MISSING])
    assert len(cases) >= 10
    for argv, rc, err in _run_all(cases, env):
        line = assert_one_clear_line(err, rc, (1, 2), " ".join(argv))
        assert MISSING in line, line


def test_the_reported_cases(tmp_path):
    """The findings of issue 26, each by name."""
    env = {**os.environ, "EDGE_ENDPOINT": f"ipc://{tmp_path}/nobody.sock"}
    expected = [
        (["produce", "t", "--value-file", "/missing"], 2, "/missing: no such file"),
        (["status", "--interval", "-1"], 2, "must be a number above 0"),
        (["api", "--port", "99999"], 2, "not a TCP port"),
        (["up", "--data-dir", "/proc/edge-data"], 2, "data directory /proc/edge-data is not usable"),
        (["broker", "--data-dir", "/proc/edge-data"], 2, "data directory /proc/edge-data is not usable"),
        (["consume", "t", "--endpoint", "localhost:9092"], 2, "tcp://localhost:9092"),
        (["topics", "create", "t", "--set", "notakey=1"], 2, "unknown setting 'notakey'"),
        (["topics", "create", "t", "--config", "notakey=1"], 2, "unknown setting 'notakey'"),  # deprecated alias
        (["topics", "create", "t", "--set", "retention_age=soon"], 2, "retention_age: expected a duration"),
        (["topics", "create", "t", "--set", "nokeyvalue"], 2, "expected KEY=VALUE"),
        (["topics", "create", "t", "--config", "/missing.toml"], 2, "/missing.toml: no such file"),
        (["export", "--topics", "t", "--out", "/nonexistent-edge-dir/drive.mcap"], 2,
         "directory /nonexistent-edge-dir does not exist: create it first"),
        (["drives", "start", "--name", "2026/11/22"], 2, "drive name '2026/11/22' is not usable"),
    ]
    results = _run_all([argv for argv, _, _ in expected], env)
    for (argv, rc, err), (_, want_rc, text) in zip(results, expected, strict=True):
        line = assert_one_clear_line(err, rc, want_rc, " ".join(argv))
        assert text in line and "validation error" not in line and "pydantic" not in line, line


def test_bad_environment_endpoint_is_named(tmp_path):
    env = {**os.environ, "EDGE_ENDPOINT": "broker-host:5555"}
    _, rc, err = _run(["topics", "list"], env)
    line = assert_one_clear_line(err, rc, 2, "topics list with a bad $EDGE_ENDPOINT")
    assert "$EDGE_ENDPOINT" in line and "tcp://broker-host:5555" in line


def test_debug_shows_the_traceback_and_version_is_printed():
    env = {**os.environ}
    debug = subprocess.run([*EDGE, "--debug", "up", "--data-dir", "/proc/edge-data"], capture_output=True,
                           env=env, timeout=30, text=True, check=False)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("edge up: data directory")
    version = subprocess.run([*EDGE, "--version"], capture_output=True, env=env, timeout=30, text=True, check=False)
    assert version.returncode == 0 and version.stdout.startswith("edge ") and version.stdout.strip() != "edge"
