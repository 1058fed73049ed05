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
                                  env=env, timeout=30, check=False)
            assert done.returncode == 0, done.stderr
            return [line for line in done.stdout.splitlines() if line]

        assert complete("consume", "camera.") == ["camera.front", "camera.rear"]
        assert complete("export", "--topics", "camera.r") == ["camera.rear"]
        assert complete("groups", "describe", "") == ["readers"]
        assert complete("topics", "de") == ["describe", "delete"]


# Drives an interactive zsh in a pseudo-terminal (zsh/zpty): compinit, the script `edge
# completion zsh` prints, then each line of words and a TAB. compadd is wrapped to print what
# the completion offered (HIT=a,b=END) before adding it, so the real dispatch runs: compsys
# finds _edge for `edge`, zsh sets words/CURRENT, _edge asks `edge __complete`.
ZSH_DRIVER = r'''
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PROMPT='> '; autoload -U compinit; compinit -u -D; eval \"\$(edge completion zsh)\""
zpty -w z 'compadd() { local -a hits; builtin compadd -O hits "$@"; print -r -- "${(U):-hit}=${(j:,:)hits}=END"; }'
for words in "$@"; do
  zpty -n -w z "edge $words"$'\t'
  out="" ; chunk=""
  for i in {1..150}; do
    zpty -r -t z chunk && out+=$chunk || sleep 0.1
    [[ $out == *HIT=*=END* ]] && break
  done
  hits=${${out##*HIT=}%%=END*}
  [[ $out == *HIT=*=END* ]] && print -r -- "$words|$hits" || print -r -- "$words|TIMEOUT"
  zpty -n -w z $'\C-u'
done
zpty -d z
'''


def test_zsh_script_loads_and_completes_in_zsh(tmp_path):
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed (scripts/test installs it with apt)")
    env = {**os.environ, "EDGE_ENDPOINT": f"ipc://{tmp_path}/nobody.sock", "PATH": f"{BIN}:{os.environ['PATH']}"}
    script = subprocess.run([sys.executable, "-m", "edge.cli", "completion", "zsh"], check=False,
                            capture_output=True, text=True, env=env, timeout=30)
    (tmp_path / "_edge").write_text(script.stdout)
    syntax = subprocess.run([zsh, "-n", str(tmp_path / "_edge")], check=False, capture_output=True, text=True,
                            timeout=30)
    assert script.returncode == 0 and syntax.returncode == 0, syntax.stderr
    done = subprocess.run([zsh, "-f", "-c", ZSH_DRIVER, "zsh", "topics de", "groups reset g --d"],
                          check=False, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["topics de|describe,delete", "groups reset g --d|--dry-run"]
