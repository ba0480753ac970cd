"""The one ``assistant`` command. Each subcommand lives in the module named for its role.

A subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``; only the module of the
command named on the command line is imported, so ``assistant --help`` is instant and a command module
imports what it needs at its top. Errors derived from ``AssistantError`` are printed as one
line (``error[code]: message``) with exit status 2; nothing prints a traceback to the user.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from assistant.errors import AssistantError
from assistant.native_heap import limit_arenas
from assistant.private_files import restrict_umask
from assistant.settings import load_settings

# (name, module, help)
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("serve", "assistant.serve", "run everything: platform API, console, screen, Rasa supervision, phone gateway"),
    ("simulate", "assistant.simulate", "run a WAV file as one call through the full pipeline"),
    ("talk", "assistant.talk", "talk to the assistant with the local microphone and speaker"),
    ("models", "dialect_models.cli", "list, fetch or verify speech models"),
    ("rasa", "assistant.dialogue.rasa_cli", "train or run the Rasa servers of intents/"),
    ("db", "assistant.platform.db_cli", "database migrations and seed data"),
    ("admin", "assistant.console.admin_cli", "console users: create, reset password, disable/enable, link elders"),
    ("pin", "assistant.fraud_guard.pin_cli", "elders' keypad PINs (identity on inbound calls): set, clear, status"),
    ("screen", "assistant.screen.cli", "the elder's smart screen (--local: sounddevice mic/speaker)"),
    ("phone", "telephony.cli", "SIP gateway and scheduled care calls"),
    ("voice", "assistant.tts.voice_cmd", "recorded voice packs: coverage, import and check recordings"),
    ("warn", "telephony.warn_cli", "warning broadcasts (typhoon/heat/outage/text) to elders by district; delivery report"),
)
EVAL_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("asr", "assistant.asr.eval_cmd", "character error rate of a recognizer on a transcripts.tsv folder"),
    ("nlu", "assistant.dialogue.eval_cmd", "intent accuracy of the Rasa model on a TSV"),
    ("emergencies", "assistant.dialogue.eval_emergencies", "spoken emergencies, non-request calls and NLU through the turn decision"),
    ("fraud", "assistant.fraud_guard.eval_cmd", "scam detector precision/recall on JSONL dialogues"),
    ("tts", "assistant.tts.eval_cmd", "voice intelligibility by ASR round trip"),
)
BENCH_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("latency", "assistant.bench.latency", "end of speech → first reply audio"),
    ("turn-taking", "assistant.bench.turn_taking", "end of turn on real recordings (Smart Turn vs fixed silence): premature cuts, wait"),
    ("calls", "telephony.bench", "concurrent SIP calls on loopback"),
    ("soak", "telephony.soak", "N calls kept up for M minutes: gateway RSS, fds and tasks over time"),
    ("handover", "telephony.handover_bench", "SOS calls in a row handed over to operator / family phones (kamailio + baresip)"),
    ("console", "assistant.console.bench", "review-queue server time with many flagged calls"),
    ("outbound", "telephony.outbound_bench", "a fast-clock day of care calls: N elders, M call-engine processes on one PostgreSQL, stand-in phones"),
)


def _add_group(sub: argparse._SubParsersAction, table: tuple[tuple[str, str, str], ...], chosen: str | None) -> None:
    """One sub-parser per command; only the chosen command's module is imported (for its options), so
    ``assistant --help`` and every command load only what that command needs."""
    for name, module, help_text in table:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)


def _chosen(argv: list[str]) -> tuple[str | None, str | None]:
    """The command (and the eval/bench sub-command) named in ``argv``: its first two words."""
    words = [a for a in argv if not a.startswith("-")]
    return (words[0] if words else None), (words[1] if len(words) > 1 else None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    command, subcommand = _chosen(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="assistant", description="长者语音助手 — offline voice assistant for elders")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_group(sub, COMMANDS, command)
    ev = sub.add_parser("eval", help="evaluation commands (print JSON)")
    _add_group(ev.add_subparsers(dest="eval_command", required=True), EVAL_COMMANDS, subcommand if command == "eval" else None)
    be = sub.add_parser("bench", help="benchmarks (print JSON)")
    _add_group(be.add_subparsers(dest="bench_command", required=True), BENCH_COMMANDS, subcommand if command == "bench" else None)
    return parser


def main(argv: list[str] | None = None) -> int:
    restrict_umask()  # store, tracker store, recordings, logs, secrets: 0600/0700 whatever the shell's umask
    limit_arenas(load_settings().server.malloc_arena_max)  # before any thread starts
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except AssistantError as exc:
        print(f"error[{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
