"""``python -m assistant.tts.prerender``: pre-render every fixed sentence into the prompt cache (var/tts_cache).

The set-up runs it after the voices are provisioned (scripts/setup.sh step 4c), so the first start of the
server finds every clause of ``assistant.phrases.Phrasebook.fixed_sentences()`` (with the configured platform
name) on disk in each dialect's first voice (kokoro-cmn:
~0.6–1.4 s per clause on an idle 2-core machine, ~50 clauses) and start-up only reads them. Idempotent:
clauses already cached are disk hits. Progress on stderr; the report as JSON on stdout. Exit 0 even when a
voice is missing (the server falls back and logs it), 1 when nothing could be rendered at all.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

from assistant.settings import load_settings
from assistant.tts.registry import broken_voices, voice_chain, warm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.tts.prerender", description=__doc__.split("\n")[0])
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)


    settings = load_settings()

    def show(done: int, total: int, clause: str) -> None:
        if not args.quiet:
            print(f"\r[prerender] {done}/{total} {clause[:20]:<20}", end="", file=sys.stderr, flush=True)

    report = asyncio.run(warm(settings=settings, progress=show))
    if not args.quiet:
        print(file=sys.stderr)
    out = dataclasses.asdict(report)
    out["voices"] = {d: next((v for v in voice_chain(d, settings) if v not in broken_voices()), None) for d in ("cmn", "yue")}
    out["unavailable"] = broken_voices()
    print(json.dumps(out, ensure_ascii=False))
    return 1 if report.failed and not (report.synthesized or report.cached) else 0


if __name__ == "__main__":
    sys.exit(main())
