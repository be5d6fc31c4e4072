"""membrane-agent / membrane-operator options: defaults < config file < MEMBRANE_* env < flags;
``--help`` documents every option; bad input names the file, variable or flag and the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from membrane.agent.config import AGENT_OPTIONS, AgentConfig, load_agent_config
from membrane.agent.main import main as agent_main
from membrane.model.options import OptionError
from membrane.operator.config import load_operator_config


def test_a_config_file_alone_is_enough_and_round_trips(tmp_path: Path) -> None:
    cfg = AgentConfig(node="n1", etcd_endpoints=("unix:///run/x/etcd.sock:2379",), cluster="c1",
                      underlay_device="eth1", run_dir="/run/x", state_dir="/run/x", bpf_pin_dir="/sys/fs/bpf/x")
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(cfg.to_file_data()))
    assert load_agent_config(["--config-file", str(path)], environ={}) == cfg
    assert cfg.api_socket == "/run/x/agent-n1.sock" and cfg.hubble_tls_dir == "/run/x/tls"


def test_env_wins_over_the_file_and_flags_win_over_env(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("node: from-file\nunderlay-device: ens3\netcd-endpoints: [http://10.0.0.1:2379]\n")
    env = {"MEMBRANE_UNDERLAY_DEVICE": "ens4", "MEMBRANE_ETCD_ENDPOINTS": "http://a:2379,http://b:2379"}
    cfg = load_agent_config(["--config-file", str(path), "--node", "from-flag"], environ=env)
    assert (cfg.node, cfg.underlay_device) == ("from-flag", "ens4")
    assert cfg.etcd_endpoints == ("http://a:2379", "http://b:2379")
    env_only = load_agent_config([], environ={"MEMBRANE_NODE": "n2", "MEMBRANE_DEBUG": "true"})
    assert env_only.node == "n2" and env_only.debug and env_only.underlay_device == "eth0"


@pytest.mark.parametrize(("text", "needle"), [
    ("node: n1\nunderlay: eth1\n", "underlay: unknown option"),
    ("node: n1\netcd-endpoints: 5\n", "etcd-endpoints: expected a list of strings"),
    ("- node\n", "must be a mapping"),
    ("node: n1\nrun-dir: relative/dir\n", "run-dir: 'relative/dir' must be an absolute path"),
    ("node: [\n", "not valid YAML or JSON"),
])
def test_a_bad_config_file_is_refused_with_file_key_and_reason(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(OptionError) as err:
        load_agent_config(["--config-file", str(path)], environ={})
    assert needle in str(err.value)
    if "absolute" not in needle:
        assert str(path) in str(err.value)


def test_missing_node_and_missing_file_exit_2_with_the_reason(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMBRANE_NODE", raising=False)
    monkeypatch.delenv("MEMBRANE_CONFIG_FILE", raising=False)
    assert agent_main([]) == 2
    assert "node: required" in capsys.readouterr().err
    assert agent_main(["--config-file", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: No such file or directory" in capsys.readouterr().err
    with pytest.raises(OptionError, match="environment MEMBRANE_DEBUG: debug: expected true or false"):
        load_agent_config(["--node", "n"], environ={"MEMBRANE_DEBUG": "maybe"})


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        agent_main(["--help"])
    text = capsys.readouterr().out
    for opt in AGENT_OPTIONS:
        assert opt.flag in text and opt.env in text, opt.name
    assert "--config-file" in text


def test_operator_options() -> None:
    cfg = load_operator_config(["--cluster", "c2"], environ={"MEMBRANE_RUN_DIR": "/run/op"})
    assert (cfg.cluster, cfg.metrics_socket) == ("c2", "/run/op/metrics-operator.sock")
