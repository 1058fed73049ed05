"""``edge up --data-dir``: every child that keeps files gets the override, not only the broker."""

from __future__ import annotations

from pathlib import Path

from edge.cli import build_parser
from edge.commands.common import load_app_config
from edge.commands.up import build_specs
from edge.config import load_config

SIM = Path(__file__).resolve().parents[2] / "configs" / "sim.toml"


def test_api_and_mirror_children_get_the_data_dir(tmp_path):
    text = SIM.read_text() + '\n[mirror]\nbootstrap_servers = "127.0.0.1:9"\ntopics = ["camera.*"]\n'
    config_path = tmp_path / "with-mirror.toml"
    config_path.write_text(text)
    data_dir = tmp_path / "elsewhere"
    specs = {s.name: s.argv for s in build_specs(load_config(config_path), str(config_path), data_dir, "ipc:///x")}
    for name in ("broker", "api", "mirror"):
        argv = specs[name]
        assert argv[argv.index("--data-dir") + 1] == str(data_dir), name


def test_children_apply_the_data_dir_override(tmp_path):
    for command in ("api", "mirror"):
        args = build_parser().parse_args([command, "--config", str(SIM), "--data-dir", str(tmp_path / "d")])
        assert load_app_config(args).broker.data_dir == (tmp_path / "d").resolve()
    args = build_parser().parse_args(["api", "--config", str(SIM)])
    assert load_app_config(args).broker.data_dir == load_config(SIM).broker.data_dir


def test_the_event_watcher_runs_only_when_triggers_are_configured(tmp_path):
    assert "events" not in {s.name for s in build_specs(load_config(SIM), str(SIM), tmp_path, "ipc:///x")}
    config_path = tmp_path / "with-triggers.toml"
    config_path.write_text(SIM.read_text()
                           + '\n[[events.triggers]]\ntopic = "vehicle.can"\nheader = "event=hard_brake"\n')
    specs = {s.name: s.argv for s in build_specs(load_config(config_path), str(config_path), tmp_path, "ipc:///x")}
    assert specs["events"][-6:] == ["events", "watch", "--config", str(config_path), "--endpoint", "ipc:///x"]
