"""``assistant db``: ``upgrade`` (alembic upgrade heads; idempotent), ``current``, ``seed-demo``, and data
protection (assistant/platform/retention.py, elder_data.py, backup.py):

    assistant db purge [--dry-run]                      retention periods (settings.privacy), now
    assistant db export-elder --elder-id N --out PATH   one elder's whole record (JSON + recordings; .zip or folder)
    assistant db delete-elder --elder-id N --confirm --reason R [--ticket REF]   erasure on request
    assistant db backup --out PATH                      SQLite online backup / pg_dump (file 0600)
    assistant db restore --from PATH [--force]          refuses while serve runs on the database

Export, deletion and purge write audit rows (``--by`` names who acts; default ``cli:<os user>``).

``seed-demo`` adds a few demo elders in Jiangmen districts (phones, family contacts, safe phrases,
care schedules). It is idempotent: elders whose first phone number already exists are left alone.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging

from assistant.errors import StoreError
from assistant.platform import backup as backups
from assistant.platform.audit import cli_actor
from assistant.platform.db import create_engine_for, describe_url
from assistant.platform.elder_data import (
    DELETE_REASONS,
    delete_elder,
    erasure_journal,
    export_elder,
    reapply_erasures,
)
from assistant.platform.migrate import (
    applied_revisions,
    current_revisions,
    is_up_to_date,
    script_heads,
    upgrade_heads,
    upgrade_heads_async,
)
from assistant.platform.retention import purge, recordings_dir, tracker_store_url
from assistant.platform.store import NewContact, NewSchedule, PlatformStore
from assistant.settings import load_settings

DEMO_ELDERS: tuple[dict, ...] = (
    {
        "name": "陈桂英",
        "district": "蓬江",
        "dialect": "yue",
        "address": "江门市蓬江区白沙街道建设三路18号502",
        "phones": [("0750-3201001", "landline"), ("13800000101", "screen")],
        "safe_phrase": "荔枝开花",
        "tts_rate_wpm": 110,
        "contacts": [
            NewContact(name="陈志强", relation="儿子", phone="13900000101", priority=1),
            NewContact(name="陈丽", relation="女儿", phone="13900000102", email="chenli@example.cn",
                       priority=2, notify_email=True),
        ],
        "schedules": [NewSchedule(days="mon,wed,fri", window_start=dt.time(9, 0), window_end=dt.time(10, 30))],
    },
    {
        "name": "李伯",
        "district": "台山",
        "dialect": "yue",
        "address": "江门市台山市台城街道环市路33号",
        "phones": [("0750-5502002", "landline")],
        "safe_phrase": "黄鳝饭",
        "contacts": [NewContact(name="李美华", relation="侄女", phone="13900000201", priority=1)],
        "schedules": [NewSchedule()],
    },
    {
        "name": "王秀兰",
        "district": "新会",
        "dialect": "cmn",
        "address": "江门市新会区会城街道新会大道中6号1201",
        "phones": [("0750-6603003", "landline"), ("13800000303", "mobile")],
        "safe_phrase": "陈皮茶",
        "text_size": "xlarge",
        "contacts": [
            NewContact(name="王建国", relation="儿子", phone="13900000301", priority=1),
            NewContact(name="张敏", relation="儿媳", phone="13900000302", priority=2, can_act=False),
        ],
        "schedules": [NewSchedule(days="tue,thu,sat", window_start=dt.time(15, 0), window_end=dt.time(17, 0))],
    },
    {
        "name": "黄德明",
        "district": "开平",
        "dialect": "yue",
        "address": "江门市开平市长沙街道幕沙路9号",
        "phones": [("0750-2204004", "landline")],
        "safe_phrase": "碉楼",
        "volume": 1.0,
        "contacts": [NewContact(name="黄小玲", relation="孙女", phone="13900000401", priority=1)],
        "schedules": [NewSchedule()],
    },
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="db_command", required=True)
    sub.add_parser("upgrade", help="bring the database to every migration head (idempotent)")
    sub.add_parser("current", help="print the revisions the database is at")
    sub.add_parser("seed-demo", help="add demo elders, family contacts and schedules (idempotent)")
    p = sub.add_parser("purge", help="delete personal data past its retention period (settings.privacy)")
    p.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    p = sub.add_parser("export-elder", help="one elder's whole record as JSON plus recordings (audited)")
    p.add_argument("--elder-id", type=int, required=True)
    p.add_argument("--out", required=True, help="a new folder, or a file ending in .zip")
    p.add_argument("--by", help="who exports (audit log); default cli:<os user>")
    p = sub.add_parser("delete-elder", help="erase one elder's personal data on request (audited)")
    p.add_argument("--elder-id", type=int, required=True)
    p.add_argument("--confirm", action="store_true", help="required: the erasure cannot be undone")
    p.add_argument("--reason", required=True, choices=_delete_reasons(), help="why (recorded in the audit log)")
    p.add_argument("--ticket", help="the request's reference (letters, digits . _ : / -; no names)")
    p.add_argument("--by", help="who erases (audit log); default cli:<os user>")
    p = sub.add_parser("backup", help="back up the database (SQLite online backup or pg_dump) to a new 0600 file")
    p.add_argument("--out", required=True)
    p = sub.add_parser("restore", help="replace the database with a backup, then migrate to heads")
    p.add_argument("--from", dest="source", required=True, metavar="PATH")
    p.add_argument("--force", action="store_true", help="restore even though serve (or another session) is connected")
    parser.add_argument("--database-url", help="override ASSISTANT_STORE_DATABASE_URL")


def _delete_reasons() -> tuple[str, ...]:
    return DELETE_REASONS


def _settings(args: argparse.Namespace):
    if getattr(args, "database_url", None):
        return load_settings(store={"database_url": args.database_url})
    return load_settings()


async def seed_demo(store) -> list[dict]:
    """Create the demo elders that are missing; returns ``[{"elder_id", "name", "created"}]``."""
    out = []
    for spec in DEMO_ELDERS:
        first_number = spec["phones"][0][0]
        existing = await store.elder_by_phone(first_number)
        if existing is not None:
            out.append({"elder_id": existing.elder_id, "name": existing.name, "created": False})
            continue
        elder = await store.create_elder(**spec)
        out.append({"elder_id": elder.elder_id, "name": elder.name, "created": True})
    return out


async def _seed(settings) -> list[dict]:
    await upgrade_heads_async(settings.store.database_url)
    engine = create_engine_for(settings)
    try:
        return await seed_demo(PlatformStore(engine=engine))
    finally:
        await engine.dispose()


def run(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        logging.getLogger("alembic").setLevel(logging.WARNING)

    settings = _settings(args)
    url = settings.store.database_url
    if args.db_command == "upgrade":
        changed = upgrade_heads(url)
        state = "migrated to" if changed else "already at"
        print(f"{describe_url(url)}: {state} {', '.join(sorted(script_heads()))}")
        return 0
    if args.db_command == "current":
        current = current_revisions(url)
        heads = script_heads()
        print(json.dumps({"database": describe_url(url), "current": sorted(current), "heads": sorted(heads),
                          "up_to_date": heads <= applied_revisions(current)}, ensure_ascii=False))
        return 0
    if args.db_command == "seed-demo":
        rows = asyncio.run(_seed(settings))
        print(json.dumps({"elders": rows}, ensure_ascii=False))
        return 0
    if args.db_command in ("purge", "export-elder", "delete-elder", "backup", "restore"):
        result = asyncio.run(_data_protection(args, settings))
        print(json.dumps(result, ensure_ascii=False))
        return 0
    raise AssertionError(args.db_command)


async def _data_protection(args: argparse.Namespace, settings) -> dict:
    from pathlib import Path

    url = settings.store.database_url
    if args.db_command == "backup":
        return (await backups.backup(url, Path(args.out), pg_bin_dir=settings.store.pg_bin_dir)).to_json()
    if args.db_command == "restore":
        result = await backups.restore(url, Path(args.source), force=args.force, pg_bin_dir=settings.store.pg_bin_dir)
        # a backup from before an erasure must not bring the elder back
        engine = create_engine_for(settings)
        try:
            result["erasures_reapplied"] = await reapply_erasures(
                PlatformStore(engine=engine), journal=erasure_journal(settings),
                recordings_dir=recordings_dir(settings), tracker_url=tracker_store_url(settings))
        finally:
            await engine.dispose()
        return result
    if args.db_command == "delete-elder" and not args.confirm:
        raise StoreError("delete-elder erases the elder's personal data for good: add --confirm", code="invalid")

    if not await asyncio.to_thread(is_up_to_date, url):
        raise StoreError("the database is not at the migration heads: run `assistant db upgrade` first",
                         code="store_config")
    engine = create_engine_for(settings)
    try:
        store = PlatformStore(engine=engine)
        if args.db_command == "purge":
            return (await purge(store, settings=settings, dry_run=args.dry_run)).to_json()
        actor = cli_actor(args.by)
        if args.db_command == "export-elder":
            return (await export_elder(store, elder_id=args.elder_id, out=Path(args.out),
                                       recordings_dir=recordings_dir(settings), actor=actor)).to_json()
        return (await delete_elder(store, elder_id=args.elder_id, actor=actor, reason=args.reason,
                                   ticket=args.ticket, recordings_dir=recordings_dir(settings),
                                   tracker_url=tracker_store_url(settings),
                                   journal=erasure_journal(settings))).to_json()
    finally:
        await engine.dispose()
