"""``assistant rasa``: train and test the Rasa project in ``intents/``; the servers' command lines.

Rasa 3.6 lives in its own environment (``.venv-rasa``, Python 3.11, built by ``scripts/setup.sh``) and is
always run as ``<rasa-env>/bin/python -m rasa ...`` with the working directory ``intents/`` (the custom
NLU components and the ``actions`` package are imported from there).

Subcommands
- ``assistant rasa train [--if-changed] [--force]`` trains ``intents/models/elder.tar.gz``. The hash of
  everything that goes into the model (``config.yml``, ``domain.yml``, ``data/``, ``components/``,
  ``credentials.yml``; not ``models/``, ``actions/``, ``tests/``, caches) is kept in ``intents/models/.hash``;
  with ``--if-changed`` nothing is done when it is unchanged and the model exists.
- ``assistant rasa test [--folds N] [--no-nlu]`` runs ``rasa test core`` on ``intents/tests/test_stories.yml``
  and NLU cross-validation; reports go under ``reports/rasa/``; prints a JSON summary.
- ``assistant rasa commands`` prints the two server command lines and their environment.

For the supervisor (``assistant/runtime.py``), the exact processes, both with ``cwd=intents/`` and both
through our launcher ``intents/secured_servers.py`` (loopback, a shared secret on every request):

    rasa server:    <rasa-env>/bin/python secured_servers.py rasa --token-file var/secrets/rasa_token --
                        run --enable-api -i <rasa_host> -p <rasa_port>
                        --model intents/models --credentials intents/credentials.yml
                        --endpoints var/rasa/endpoints.yml
                    health: GET http://127.0.0.1:<rasa_port>/status?token=<rasa token>
    action server:  <rasa-env>/bin/python secured_servers.py actions --host <actions_host> -p <actions_port>
                        --token-file var/secrets/actions_token --actions actions
                    health: GET http://127.0.0.1:<actions_port>/health (the only open route)

Secrets: ``rasa_token`` (our client → the Rasa server: its ``--auth-token``, and the REST channel, as
``?token=``) and ``actions_token`` (the Rasa server → the action server, header ``X-Action-Token`` from
``action_endpoint.headers`` in endpoints.yml). Each is ``dialogue.rasa_token`` / ``dialogue.actions_token`` when
set, else generated once in ``var/secrets/`` (0600, folder 0700); the launcher reads it from the file, never from
the command line (every local user can read ``ps``). ``var/rasa/endpoints.yml`` holds the action token and is 0600.

``rasa_server_command(settings)`` writes ``var/rasa/endpoints.yml`` from the settings: the action server
URL (``http://127.0.0.1:<actions_port>/webhook``), the tracker store (SQLite ``var/rasa/tracker.db`` by
default; ``dialogue.tracker_store_url = postgresql://user:pw@host:5432/db`` for PostgreSQL) and, when
``dialogue.lock_store_url = redis://host:6379/1`` is set, a Redis lock store so that several Rasa servers
can share the tracker store. Environment for both children (``rasa_child_env``):

    ASSISTANT_API_URL        base URL of the Platform API (the action server calls /api/orders, /api/alerts)
    ASSISTANT_SERVICE_TOKEN  bearer token for the Platform API
    ASSISTANT_PLATFORM_NAME  the platform's name in what the actions say (settings.platform.name)
    RASA_TELEMETRY_ENABLED=false, TF_CPP_MIN_LOG_LEVEL=2 (quiet, offline)
and for the Rasa server only (``rasa_server_env``):

    TF_INTER_OP_PARALLELISM_THREADS, TF_INTRA_OP_PARALLELISM_THREADS = dialogue.rasa_tf_threads
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from assistant.errors import DialogueError, SetupError
from assistant.phrases import DEFAULT_PLATFORM_NAME
from assistant.private_files import FILE_MODE, private_dir, secret_in_file
from assistant.settings import Settings, load_settings

MODEL_NAME = "elder"
# what goes into the trained model; everything else in intents/ can change without retraining
MODEL_INPUTS = ("config.yml", "domain.yml", "credentials.yml", "data", "components")
_SKIP_PARTS = {"__pycache__", ".rasa", "models", "results"}


# -- command lines for the supervisor ---------------------------------------------------------------------
def rasa_python(settings: Settings) -> Path:
    env_dir = Path(settings.dialogue.rasa_env_dir) if settings.dialogue.rasa_env_dir else settings.paths.root / ".venv-rasa"
    python = env_dir / "bin" / "python"
    if not python.exists():
        raise SetupError(f"the Rasa environment is missing at {env_dir} (run scripts/setup.sh)")
    return python


ACTION_TOKEN_HEADER = "X-Action-Token"  # the header intents/secured_servers.py checks
LAUNCHER = "secured_servers.py"  # in intents/


def secrets_dir(settings: Settings) -> Path:
    return settings.paths.var_dir / "secrets"


def _token_file(settings: Settings, name: str, explicit: str) -> Path:
    """``var/secrets/<name>``: the configured value written there (0600), else a generated one kept there."""
    path = secrets_dir(settings) / name
    if explicit:
        private_dir(path.parent)
        if not path.exists() or path.read_text().strip() != explicit:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with os.fdopen(fd, "w") as f:
                f.write(explicit + "\n")
        return path
    secret_in_file(path)
    return path


def rasa_token_file(settings: Settings) -> Path:
    return _token_file(settings, "rasa_token", settings.dialogue.rasa_token)


def actions_token_file(settings: Settings) -> Path:
    return _token_file(settings, "actions_token", settings.dialogue.actions_token)


def rasa_token(settings: Settings) -> str:
    """The secret our client sends to the Rasa server (``?token=``)."""
    return rasa_token_file(settings).read_text().strip()


def actions_token(settings: Settings) -> str:
    """The secret the Rasa server sends to the action server (``X-Action-Token``)."""
    return actions_token_file(settings).read_text().strip()


def model_path(settings: Settings) -> Path:
    return settings.paths.intents_dir / "models" / f"{MODEL_NAME}.tar.gz"


def _tracker_store(settings: Settings) -> dict[str, Any]:
    url = settings.dialogue.tracker_store_url
    if not url:
        db = settings.paths.var_dir / "rasa" / "tracker.db"
        return {"type": "SQL", "dialect": "sqlite", "db": str(db)}
    parts = urlsplit(url)
    dialect = parts.scheme.split("+")[0]
    if dialect not in {"postgresql", "sqlite"}:
        raise SetupError(f"tracker store URL must be postgresql://... or sqlite:///..., not {parts.scheme}://")
    if dialect == "sqlite":
        return {"type": "SQL", "dialect": "sqlite", "db": parts.path.lstrip("/") if parts.netloc else parts.path}
    store: dict[str, Any] = {
        "type": "SQL",
        "dialect": "postgresql",
        "url": parts.hostname or "localhost",
        "port": parts.port or 5432,
        "db": parts.path.lstrip("/") or "rasa",
    }
    if parts.username:
        store["username"] = unquote(parts.username)
    if parts.password:
        store["password"] = unquote(parts.password)
    return store


def _lock_store(settings: Settings) -> dict[str, Any] | None:
    url = settings.dialogue.lock_store_url
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"}:
        raise SetupError(f"lock store URL must be redis://host:port/db, not {url}")
    lock: dict[str, Any] = {
        "type": "redis",
        "url": parts.hostname or "localhost",
        "port": parts.port or 6379,
        "db": int(parts.path.lstrip("/") or 1),
        "use_ssl": parts.scheme == "rediss",
    }
    if parts.password:
        lock["password"] = unquote(parts.password)
    return lock


def endpoints_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "action_endpoint": {
            "url": f"http://127.0.0.1:{settings.dialogue.actions_port}/webhook",
            "headers": {ACTION_TOKEN_HEADER: actions_token(settings)},
        },
        "tracker_store": _tracker_store(settings),
    }
    lock = _lock_store(settings)
    if lock:
        config["lock_store"] = lock
    return config


def write_endpoints(settings: Settings) -> Path:
    """``var/rasa/endpoints.yml`` for the Rasa server (JSON is valid YAML; 0600: it holds the action token and
    any tracker-store password), and the SQLite folder (0700)."""
    folder = private_dir(settings.paths.var_dir / "rasa")
    path = folder / "endpoints.yml"
    text = json.dumps(endpoints_config(settings), indent=2) + "\n"
    if not path.exists() or path.read_text() != text:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    path.chmod(FILE_MODE)
    return path


def rasa_server_command(settings: Settings, *, python: Path | str | None = None) -> list[str]:
    """The Rasa server (REST channel + HTTP API on ``dialogue.rasa_host``, token required). ``cwd=intents/``."""
    intents = settings.paths.intents_dir
    return [
        str(python or rasa_python(settings)),
        LAUNCHER,
        "rasa",
        "--token-file",
        str(rasa_token_file(settings)),
        "--",
        "run",
        "--enable-api",
        "-i",
        settings.dialogue.rasa_host,
        "-p",
        str(settings.dialogue.rasa_port),
        "--model",
        str(intents / "models"),
        "--credentials",
        str(intents / "credentials.yml"),
        "--endpoints",
        str(write_endpoints(settings)),
    ]


def action_server_command(settings: Settings, *, python: Path | str | None = None) -> list[str]:
    """The rasa-sdk action server on ``dialogue.actions_host``, token required. ``cwd=intents/``, ``rasa_child_env``."""
    return [
        str(python or rasa_python(settings)),
        LAUNCHER,
        "actions",
        "--host",
        settings.dialogue.actions_host,
        "--port",
        str(settings.dialogue.actions_port),
        "--token-file",
        str(actions_token_file(settings)),
        "--actions",
        "actions",
    ]


def rasa_child_env(*, api_url: str, service_token: str, platform_name: str = DEFAULT_PLATFORM_NAME) -> dict[str, str]:
    return {
        "ASSISTANT_API_URL": api_url,
        "ASSISTANT_SERVICE_TOKEN": service_token,
        "ASSISTANT_PLATFORM_NAME": platform_name,  # the actions' phrases name the platform (settings.platform.name)
        "RASA_TELEMETRY_ENABLED": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def rasa_server_env(settings: Settings) -> dict[str, str]:
    """TensorFlow's thread counts, for the Rasa server only: Rasa imports TensorFlow to apply them, which
    would add ~300 MB to the action server."""
    threads = str(settings.dialogue.rasa_tf_threads)
    return {"TF_INTER_OP_PARALLELISM_THREADS": threads, "TF_INTRA_OP_PARALLELISM_THREADS": threads}


# -- train if changed ---------------------------------------------------------------------------------------
def intents_hash(intents_dir: Path) -> str:
    """sha256 over the model's inputs (paths and bytes, in a stable order)."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for name in MODEL_INPUTS:
        p = intents_dir / name
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(f for f in p.rglob("*") if f.is_file())
    for f in sorted(files):
        rel = f.relative_to(intents_dir)
        if _SKIP_PARTS.intersection(rel.parts) or f.suffix == ".pyc":
            continue
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update(f.read_bytes() + b"\0")
    return digest.hexdigest()


def hash_file(settings: Settings) -> Path:
    return settings.paths.intents_dir / "models" / ".hash"


def needs_training(settings: Settings) -> bool:
    h = hash_file(settings)
    if not model_path(settings).exists() or not h.exists():
        return True
    return h.read_text().strip() != intents_hash(settings.paths.intents_dir)


def _child_env() -> dict[str, str]:
    return {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}


def train(settings: Settings, *, if_changed: bool = False) -> dict[str, Any]:
    intents = settings.paths.intents_dir
    if if_changed and not needs_training(settings):
        return {"trained": False, "reason": "unchanged", "model": str(model_path(settings))}
    python = rasa_python(settings)
    digest = intents_hash(intents)
    (intents / "models").mkdir(exist_ok=True)
    log = settings.paths.var_dir / "logs" / "rasa-train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.run(
            [str(python), "-m", "rasa", "train", "--out", "models", "--fixed-model-name", MODEL_NAME],
            cwd=intents,
            env=_child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seconds = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0 or not model_path(settings).exists():
        raise DialogueError(f"rasa train failed (exit {proc.returncode}); see {log}", code="rasa_train_failed")
    hash_file(settings).write_text(digest + "\n")
    return {"trained": True, "seconds": seconds, "model": str(model_path(settings)), "log": str(log)}


# -- rasa test ----------------------------------------------------------------------------------------------
def test(settings: Settings, *, folds: int = 3, nlu: bool = True) -> dict[str, Any]:
    intents = settings.paths.intents_dir
    python = rasa_python(settings)
    if not model_path(settings).exists():
        raise SetupError("no trained Rasa model (run `assistant rasa train`)")
    out = settings.paths.reports_dir / "rasa"
    out.mkdir(parents=True, exist_ok=True)
    log = settings.paths.var_dir / "logs" / "rasa-test.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    with open(log, "wb") as logf:
        t0 = time.perf_counter()
        core = subprocess.run(
            [str(python), "-m", "rasa", "test", "core", "--model", str(model_path(settings)),
             "--stories", "tests", "--out", str(out / "core"), "--no-plot"],
            cwd=intents, env=_child_env(), stdout=logf, stderr=subprocess.STDOUT,
        )  # fmt: skip
        summary["core_seconds"] = round(time.perf_counter() - t0, 1)
        summary["core_exit"] = core.returncode
        summary["stories"] = _story_summary(out / "core")
        if nlu:
            t0 = time.perf_counter()
            proc = subprocess.run(
                [str(python), "-m", "rasa", "test", "nlu", "--nlu", "data/nlu.yml", "--config", "config.yml",
                 "--cross-validation", "--folds", str(folds), "--out", str(out / "nlu"), "--no-plot"],
                cwd=intents, env=_child_env(), stdout=logf, stderr=subprocess.STDOUT,
            )  # fmt: skip
            summary["nlu_seconds"] = round(time.perf_counter() - t0, 1)
            summary["nlu_exit"] = proc.returncode
            summary["nlu_cross_validation"] = _nlu_summary(out / "nlu")
    summary["reports"] = str(out)
    summary["log"] = str(log)
    return summary


def _story_summary(folder: Path) -> dict[str, Any]:
    failed_file = folder / "failed_test_stories.yml"
    failed = failed_file.read_text().count("- story:") if failed_file.exists() else None
    report = folder / "story_report.json"
    result: dict[str, Any] = {"failed": failed}
    if report.exists():
        data = json.loads(report.read_text())
        if isinstance(data.get("conversation_accuracy"), dict):
            result["conversation_accuracy"] = data["conversation_accuracy"]
        if isinstance(data.get("accuracy"), int | float):
            result["action_accuracy"] = data["accuracy"]
        if isinstance(data.get("macro avg"), dict):
            result["action_macro_f1"] = data["macro avg"].get("f1-score")
    return result


def _nlu_summary(folder: Path) -> dict[str, Any]:
    report = folder / "intent_report.json"
    if not report.exists():
        return {}
    data = json.loads(report.read_text())
    return {
        "accuracy": data.get("accuracy"),
        "macro_f1": (data.get("macro avg") or {}).get("f1-score"),
        "weighted_f1": (data.get("weighted avg") or {}).get("f1-score"),
    }


# -- CLI ----------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="rasa_command", required=True)
    t = sub.add_parser("train", help="train intents/models/elder.tar.gz")
    t.add_argument("--if-changed", action="store_true", help="skip when intents/ is unchanged since the last training")
    ts = sub.add_parser("test", help="rasa test core (test stories) + NLU cross-validation into reports/rasa/")
    ts.add_argument("--folds", type=int, default=3)
    ts.add_argument("--no-nlu", action="store_true", help="only the test stories")
    sub.add_parser("commands", help="print the Rasa server and action server command lines")


def run(args: argparse.Namespace) -> int:

    settings = load_settings()
    if args.rasa_command == "train":
        result = train(settings, if_changed=args.if_changed)
        print(json.dumps(result, ensure_ascii=False))
        return 0
    if args.rasa_command == "test":
        result = test(settings, folds=args.folds, nlu=not args.no_nlu)
        print(json.dumps(result, ensure_ascii=False, indent=2))
        failed = (result.get("stories") or {}).get("failed")
        return 0 if result.get("core_exit") == 0 and not failed else 1
    if args.rasa_command == "commands":
        print(json.dumps(
            {
                "cwd": str(settings.paths.intents_dir),
                "rasa_server": rasa_server_command(settings),
                "action_server": action_server_command(settings),
                "env": rasa_child_env(api_url=f"http://{settings.server.host}:{settings.server.port}", service_token="<service token>",
                                      platform_name=settings.platform.name),
                "rasa_server_env": rasa_server_env(settings),
            },
            ensure_ascii=False, indent=2,
        ))  # fmt: skip
        return 0
    return 2
