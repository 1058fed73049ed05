"""Shell completion: commands, flags and choices from the argparse tree, topic and group
names from the running broker, and the bash script driving it for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from broker.client import Admin
from edge.cli import build_parser
from edge.completion import candidates
from tests.support.broker_process import BrokerProcess

BIN = str(Path(sys.executable).parent)


def test_commands_flags_and_choices_from_the_tree(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_ENDPOINT", f"ipc://{tmp_path}/nobody.sock")  # no broker: names are empty, fast
    parser = build_parser()
    assert candidates(parser, ["gr"]) == ["groups"]
    assert candidates(parser, ["groups", ""]) == ["list", "describe", "reset"]
    assert "--dry-run" in candidates(parser, ["groups", "reset", "g", "--d"])
    assert candidates(parser, ["consume", "t", "--format", ""]) == ["json", "value"]
    assert candidates(parser, ["drives", "s"]) == ["start", "stop"]
    assert candidates(parser, ["consume", ""]) == []  # no broker: nothing, and quickly
    assert candidates(parser, ["produce", "t", "--value-file", ""]) == []  # a file: the shell offers files


def test_topics_and_groups_from_the_broker_through_bash(data_dir):
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    with BrokerProcess(data_dir) as broker:
        with Admin(broker.endpoint) as admin:
            admin.create_topic("camera.front", 1)
            admin.create_topic("camera.rear", 1)
            admin.commit_offsets("readers", {("camera.front", 0): 0})
        env = {**os.environ, "EDGE_ENDPOINT": broker.endpoint, "PATH": f"{BIN}:{os.environ['PATH']}"}

        def complete(*words: str) -> list[str]:
            script = ('eval "$(edge completion bash)"; COMP_WORDS=(edge "$@"); COMP_CWORD=$#; _edge_complete; '
                      'printf "%s\\n" "${COMPREPLY[@]}"')
            done = subprocess.run(["bash", "-c", script, "complete", *words], capture_output=True, text=True,
                                  env=env, timeout=30)
            assert done.returncode == 0, done.stderr
            return [line for line in done.stdout.splitlines() if line]

        assert complete("consume", "camera.") == ["camera.front", "camera.rear"]
        assert complete("export", "--topics", "camera.r") == ["camera.rear"]
        assert complete("groups", "describe", "") == ["readers"]
        assert complete("topics", "de") == ["describe", "delete"]
