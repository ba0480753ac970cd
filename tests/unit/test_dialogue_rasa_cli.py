"""``assistant rasa``: train-if-changed hashing, endpoints from settings, the supervisor's command lines."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from assistant.dialogue import rasa_cli
from assistant.errors import SetupError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def intents_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "intents"
    for name in ("config.yml", "domain.yml", "credentials.yml", "data", "components", "actions", "tests"):
        src = ROOT / "intents" / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.mkdir(exist_ok=True)
            shutil.copy(src, dst / name)
    return dst


def with_intents(settings, intents: Path):
    return dataclasses.replace(settings, paths=dataclasses.replace(settings.paths, intents_dir=intents))


def test_hash_changes_with_model_inputs_only(intents_copy: Path):
    before = rasa_cli.intents_hash(intents_copy)
    assert before == rasa_cli.intents_hash(intents_copy)  # stable
    (intents_copy / "actions" / "actions.py").write_text("# edited\n")
    (intents_copy / "tests" / "test_stories.yml").write_text("# edited\n")
    (intents_copy / "models").mkdir()
    (intents_copy / "models" / "elder.tar.gz").write_bytes(b"x")
    assert rasa_cli.intents_hash(intents_copy) == before  # not model inputs
    with open(intents_copy / "data" / "nlu.yml", "a", encoding="utf-8") as f:
        f.write("      - 我要订煤气啦\n")
    assert rasa_cli.intents_hash(intents_copy) != before


def test_train_if_changed_skips_when_hash_and_model_match(intents_copy: Path, settings, monkeypatch):
    s = with_intents(settings, intents_copy)
    assert rasa_cli.needs_training(s)  # no model yet
    (intents_copy / "models").mkdir()
    rasa_cli.model_path(s).write_bytes(b"model")
    rasa_cli.hash_file(s).write_text(rasa_cli.intents_hash(intents_copy) + "\n")
    assert not rasa_cli.needs_training(s)

    def no_rasa(*a, **k):
        raise AssertionError("rasa train must not run when nothing changed")

    monkeypatch.setattr(rasa_cli.subprocess, "run", no_rasa)
    assert rasa_cli.train(s, if_changed=True) == {"trained": False, "reason": "unchanged", "model": str(rasa_cli.model_path(s))}
    (intents_copy / "config.yml").write_text((intents_copy / "config.yml").read_text() + "\n# changed\n")
    assert rasa_cli.needs_training(s)


def test_train_reports_failure_with_the_log(intents_copy: Path, settings, monkeypatch, tmp_path):
    s = with_intents(settings, intents_copy)
    fake_env = tmp_path / "rasa-env"
    (fake_env / "bin").mkdir(parents=True)
    (fake_env / "bin" / "python").write_text("#!/bin/sh\nexit 3\n")
    (fake_env / "bin" / "python").chmod(0o755)
    s = dataclasses.replace(s, dialogue=dataclasses.replace(s.dialogue, rasa_env_dir=str(fake_env)))
    with pytest.raises(Exception) as err:
        rasa_cli.train(s)
    assert getattr(err.value, "code", "") == "rasa_train_failed"
    assert not rasa_cli.hash_file(s).exists()  # a failed training never marks the model fresh


def test_endpoints_default_sqlite_postgres_and_redis(settings):
    config = rasa_cli.endpoints_config(settings)
    assert config["tracker_store"] == {"type": "SQL", "dialect": "sqlite", "db": str(settings.paths.var_dir / "rasa" / "tracker.db")}
    assert config["action_endpoint"]["url"] == f"http://127.0.0.1:{settings.dialogue.actions_port}/webhook"
    assert "lock_store" not in config

    pg = dataclasses.replace(
        settings,
        dialogue=dataclasses.replace(
            settings.dialogue,
            tracker_store_url="postgresql://rasa:s%40cret@db.local:5433/trackers",
            lock_store_url="redis://:pw@cache.local:6380/2",
        ),
    )
    config = rasa_cli.endpoints_config(pg)
    assert config["tracker_store"] == {"type": "SQL", "dialect": "postgresql", "url": "db.local", "port": 5433,
                                       "db": "trackers", "username": "rasa", "password": "s@cret"}  # fmt: skip
    assert config["lock_store"] == {"type": "redis", "url": "cache.local", "port": 6380, "db": 2, "use_ssl": False, "password": "pw"}

    bad = dataclasses.replace(settings, dialogue=dataclasses.replace(settings.dialogue, tracker_store_url="mysql://x/y"))
    with pytest.raises(SetupError):
        rasa_cli.endpoints_config(bad)


def test_server_command_lines_for_the_supervisor(settings):
    s = dataclasses.replace(settings, dialogue=dataclasses.replace(settings.dialogue, rasa_port=5123, actions_port=5124))
    server = rasa_cli.rasa_server_command(s, python="/env/bin/python")
    rasa_token_file = s.paths.var_dir / "secrets" / "rasa_token"
    assert server[:7] == ["/env/bin/python", "secured_servers.py", "rasa", "--token-file", str(rasa_token_file), "--", "run"]
    assert "--enable-api" in server and "--auth-token" not in server  # the token never shows in `ps`
    assert server[server.index("-p") + 1] == "5123" and server[server.index("-i") + 1] == "127.0.0.1"
    endpoints = Path(server[server.index("--endpoints") + 1])
    action_endpoint = json.loads(endpoints.read_text())["action_endpoint"]
    assert action_endpoint["url"] == "http://127.0.0.1:5124/webhook"
    assert action_endpoint["headers"] == {"X-Action-Token": rasa_cli.actions_token(s)}
    assert endpoints.stat().st_mode & 0o777 == 0o600  # it holds the action token
    assert (s.paths.var_dir / "rasa").is_dir()  # SQLite needs the folder
    actions = rasa_cli.action_server_command(s, python="/env/bin/python")
    actions_token_file = s.paths.var_dir / "secrets" / "actions_token"
    assert actions == ["/env/bin/python", "secured_servers.py", "actions", "--host", "127.0.0.1", "--port", "5124",
                       "--token-file", str(actions_token_file), "--actions", "actions"]  # fmt: skip
    for f in (rasa_token_file, actions_token_file):
        assert f.stat().st_mode & 0o777 == 0o600 and len(f.read_text().strip()) >= 32
    assert (s.paths.var_dir / "secrets").stat().st_mode & 0o777 == 0o700
    assert rasa_cli.rasa_token(s) != rasa_cli.actions_token(s)
    assert rasa_cli.rasa_token(s) == rasa_cli.rasa_token(s)  # generated once, then kept
    fixed = dataclasses.replace(s, dialogue=dataclasses.replace(s.dialogue, rasa_token="configured-token-0123456789"))
    assert rasa_cli.rasa_token(fixed) == "configured-token-0123456789"
    env = rasa_cli.rasa_child_env(api_url="http://127.0.0.1:8080", service_token="t")
    assert env["ASSISTANT_API_URL"] == "http://127.0.0.1:8080" and env["ASSISTANT_SERVICE_TOKEN"] == "t"
    assert env["ASSISTANT_PLATFORM_NAME"] == "平安通"  # what the actions call the platform (settings.platform.name)
    assert not any(k.startswith("TF_INTER") for k in env)  # the action server must not import TensorFlow
    server = rasa_cli.rasa_server_env(s)
    assert server["TF_INTER_OP_PARALLELISM_THREADS"] == server["TF_INTRA_OP_PARALLELISM_THREADS"] == "1"


def test_missing_rasa_env_is_a_setup_error(settings, tmp_path):
    s = dataclasses.replace(settings, dialogue=dataclasses.replace(settings.dialogue, rasa_env_dir=str(tmp_path / "nope")))
    with pytest.raises(SetupError, match="Rasa environment is missing"):
        rasa_cli.rasa_python(s)
