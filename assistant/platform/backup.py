"""``assistant db backup`` / ``assistant db restore`` for SQLite and PostgreSQL.

SQLite: SQLite's online backup API (``sqlite3.Connection.backup``, in a worker thread) copies a consistent
snapshot while ``assistant serve`` keeps writing (WAL: readers never block the writer). The backup is a
plain single-file SQLite database (journal mode DELETE), checked with ``PRAGMA quick_check``. Restore checks
the file the same way and copies it into the live database with the same API, then brings the schema to
the migration heads.

PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore --clean --if-exists --no-owner --single-transaction``,
from ``store.pg_bin_dir`` when set, else ``/usr/lib/postgresql/<server major>/bin`` (Debian's layout), else
the first ``pg_dump`` on PATH; a client older than the server is refused. The password goes through the
environment (``PGPASSWORD``), never the command line.

Every backup file is created 0600 (it holds personal data) and never overwrites an existing file.

A running ``assistant serve`` and restore: serve holds an advisory lock (``<database>.serve-lock``, see
``ServeLock``) on a SQLite database; on PostgreSQL any other session connected to the database counts.
Restore refuses then unless ``force=True`` (``--force``). Safe procedure: stop serve, restore, start serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from assistant.errors import StoreError
from assistant.platform.migrate import upgrade_heads_async

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
PG_TIMEOUT_S = 3600.0


@dataclass(frozen=True, kw_only=True)
class BackupResult:
    backend: str
    path: Path
    size_bytes: int
    tables: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "path": str(self.path), "size_bytes": self.size_bytes, "tables": self.tables}


def _backend(url: str) -> str:
    try:
        name = make_url(url).get_backend_name()
    except Exception as exc:
        raise StoreError(f"bad database URL: {exc}", code="store_config") from exc
    if name not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {name!r} (sqlite or postgresql)", code="store_config")
    return name


def sqlite_path(url: str) -> Path:
    db = make_url(url).database or ""
    if not db or db == ":memory:" or db.startswith("file:"):
        raise StoreError("backup needs an SQLite database file", code="store_config")
    return Path(db).expanduser()


# ---------------------------------------------------------------- serve lock


class ServeLock:
    """An advisory ``flock`` held by ``assistant serve`` on ``<sqlite db>.serve-lock`` while it runs, so that
    ``restore`` can tell. Never blocks and never fails start-up: if another process holds it, serve runs
    anyway (``held`` is False)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_url(cls, url: str) -> ServeLock | None:
        if _backend(url) != "sqlite":
            return None
        try:
            db = sqlite_path(url)
        except StoreError:
            return None
        return cls(db.with_name(db.name + ".serve-lock"))

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def serve_running(url: str) -> bool:
    """SQLite: True when another process holds the serve lock (blocking but instant)."""
    lock = ServeLock.for_url(url)
    if lock is None or not lock.path.exists():
        return False
    if lock.acquire():
        lock.release()
        return False
    return True


# ---------------------------------------------------------------- files


def _new_private_file(path: Path) -> int:
    """Create ``path`` 0600 (refusing an existing file); returns the open fd."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise StoreError(f"{path} already exists: backups are never overwritten", code="exists") from exc


def _sqlite_check(path: Path) -> dict[str, int]:
    """``quick_check`` and the row count of each table; raises ``StoreError`` for a bad file."""
    with open(path, "rb") as f:
        if f.read(16) != SQLITE_MAGIC:
            raise StoreError(f"{path} is not an SQLite database", code="backup_invalid")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise StoreError(f"{path} failed SQLite's quick_check: {ok}", code="backup_invalid")
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        if "alembic_version" not in tables or "work_orders" not in tables:
            raise StoreError(f"{path} is not an elder-assistant database (no alembic_version/work_orders)",
                             code="backup_invalid")
        return {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}
    finally:
        conn.close()


def _sqlite_backup(db: Path, out: Path) -> BackupResult:
    if not db.exists():
        raise StoreError(f"no database at {db}", code="not_found")
    fd = _new_private_file(out)
    os.close(fd)
    try:
        src = sqlite3.connect(str(db), timeout=30.0)
        dst = sqlite3.connect(str(out))
        try:
            src.backup(dst)  # one step: a consistent snapshot even while serve writes
            dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
            dst.commit()
        finally:
            dst.close()
            src.close()
        os.chmod(out, 0o600)
        with open(out, "rb") as f:
            os.fsync(f.fileno())
        tables = _sqlite_check(out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
        raise
    return BackupResult(backend="sqlite", path=out, size_bytes=out.stat().st_size, tables=tables)


def _sqlite_restore(src_path: Path, db: Path) -> dict[str, int]:
    tables = _sqlite_check(src_path)
    db.parent.mkdir(parents=True, exist_ok=True)
    if not db.exists():
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True)
    dst = sqlite3.connect(str(db), timeout=30.0)
    try:
        src.backup(dst)
        dst.commit()
    finally:
        dst.close()
        src.close()
    os.chmod(db, 0o600)
    return tables


# ---------------------------------------------------------------- PostgreSQL


def _pg_env(url: str) -> tuple[dict[str, str], str]:
    u = make_url(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"PGHOST": u.host or "127.0.0.1", "PGPORT": str(u.port or 5432), "PGUSER": u.username or "postgres",
                "PGDATABASE": u.database or "postgres", "PGCONNECT_TIMEOUT": "10"})
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    return env, u.database or "postgres"


async def _pg_scalar(url: str, sql: str) -> Any:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    u = make_url(url)
    if u.drivername != "postgresql+asyncpg":
        u = u.set(drivername="postgresql+asyncpg")
    engine = create_async_engine(u, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar()
    except Exception as exc:
        raise StoreError(f"database unreachable: {type(exc).__name__}", code="store_failed") from exc
    finally:
        await engine.dispose()


def _tool_major(tool: Path) -> int:
    import subprocess

    out = subprocess.run([str(tool), "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    if not m:
        raise StoreError(f"cannot read the version of {tool}", code="backup_tool")
    return int(m.group(1))


def find_pg_tool(name: str, server_major: int, bin_dir: str = "") -> Path:
    """``pg_dump``/``pg_restore`` able to handle a server of ``server_major`` (blocking: runs --version)."""
    candidates: list[Path] = []
    if bin_dir:
        candidates.append(Path(bin_dir) / name)
    else:
        candidates.append(Path(f"/usr/lib/postgresql/{server_major}/bin") / name)
        base = Path("/usr/lib/postgresql")
        if base.is_dir():
            for d in sorted(base.iterdir(), key=lambda p: -int(p.name) if p.name.isdigit() else 0):
                if d.name.isdigit() and int(d.name) > server_major:
                    candidates.append(d / "bin" / name)
        found = shutil.which(name)
        if found:
            candidates.append(Path(found))
    for tool in candidates:
        if tool.is_file() and os.access(tool, os.X_OK):
            major = _tool_major(tool)
            if major >= server_major:
                return tool
            if bin_dir:
                raise StoreError(f"{tool} is version {major}, older than the server ({server_major})",
                                 code="backup_tool")
    raise StoreError(f"no {name} for PostgreSQL {server_major} (Debian: apt-get install postgresql-client-"
                     f"{server_major}; or ASSISTANT_STORE_PG_BIN_DIR)", code="backup_tool")


async def _pg_major(url: str) -> int:
    return int(await _pg_scalar(url, "SHOW server_version_num")) // 10000


async def _run(argv: list[str], *, env: dict[str, str], stdout: int | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout if stdout is not None else asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), timeout=PG_TIMEOUT_S)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        last = (err or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise StoreError(f"{Path(argv[0]).name} failed ({proc.returncode}): {last[0][:300]}", code="backup_failed")


async def _pg_backup(url: str, out: Path, bin_dir: str) -> BackupResult:
    major = await _pg_major(url)
    tool = await asyncio.to_thread(find_pg_tool, "pg_dump", major, bin_dir)
    env, _db = _pg_env(url)
    fd = await asyncio.to_thread(_new_private_file, out)
    try:
        try:
            await _run([str(tool), "--format=custom", "--no-owner", "--no-privileges"], env=env, stdout=fd)
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(out.unlink)
        raise
    size = (await asyncio.to_thread(out.stat)).st_size
    return BackupResult(backend="postgresql", path=out, size_bytes=size)


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


async def pg_other_sessions(url: str) -> int:
    return int(await _pg_scalar(
        url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ) or 0)


async def _pg_restore(url: str, src: Path, bin_dir: str, *, force: bool) -> None:
    if await asyncio.to_thread(_head, src, 5) != PGDUMP_MAGIC:
        raise StoreError(f"{src} is not a pg_dump custom-format file", code="backup_invalid")
    others = await pg_other_sessions(url)
    if others and not force:
        raise StoreError(f"{others} other session(s) are connected to the database (a running serve?): stop "
                         "them first, or restore with --force", code="restore_refused")
    major = await _pg_major(url)
    tool = await asyncio.to_thread(find_pg_tool, "pg_restore", major, bin_dir)
    env, db = _pg_env(url)
    await _run([str(tool), "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
                "--exit-on-error", f"--dbname={db}", str(src)], env=env)


# ---------------------------------------------------------------- entry points


async def backup(url: str, out: Path, *, pg_bin_dir: str = "") -> BackupResult:
    """Write a backup of the database at ``url`` to the new file ``out`` (0600)."""
    if _backend(url) == "sqlite":
        return await asyncio.to_thread(_sqlite_backup, sqlite_path(url), out)
    return await _pg_backup(url, out, pg_bin_dir)


async def restore(url: str, src: Path, *, force: bool = False, pg_bin_dir: str = "") -> dict[str, Any]:
    """Replace the database at ``url`` with the backup ``src``, then migrate to heads. Refuses while serve
    runs on it unless ``force``."""
    if not await asyncio.to_thread(src.is_file):
        raise StoreError(f"no backup file {src}", code="not_found")
    backend = _backend(url)
    tables: dict[str, int] | None = None
    if backend == "sqlite":
        if await asyncio.to_thread(serve_running, url) and not force:
            raise StoreError("assistant serve is running on this database: stop it first, or restore with --force",
                             code="restore_refused")
        tables = await asyncio.to_thread(_sqlite_restore, src, sqlite_path(url))
    else:
        await _pg_restore(url, src, pg_bin_dir, force=force)

    migrated = await upgrade_heads_async(url)
    return {"backend": backend, "from": str(src), "tables": tables, "migrated": migrated}
