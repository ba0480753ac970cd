"""Console page for recording a voice pack (issue #19): every sentence the bot says, recorded by staff in
the browser (microphone → ``static/voice.js`` → a 16-bit WAV upload), checked automatically
(``assistant.tts.voice_coverage.record``: trimmed, loudness-normalised, read back by the recogniser), played
back, re-recorded at will. Progress: "已录 143 / 160 句".

- ``GET /console/voice?dialect=yue``: the page (sentences still to record first).
- ``POST /console/voice/{dialect}``: multipart ``text`` + ``audio`` (WAV; ``X-CSRF-Token`` header or ``_csrf``
  field) → JSON ``{"status","cer","heard","threshold","recorded","sentences"}``; audited.
- ``GET /console/voice/{dialect}/audio/{file}``: a stored recording (only files the manifest names).
"""

from __future__ import annotations

import asyncio
import io

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console import auth
from assistant.console.auth import ConsoleError, Principal
from assistant.console.render import error_page, esc, page
from assistant.console.web import client_ip, guarded
from assistant.phrases import DIALECTS
from assistant.platform.models_console import STAFF_ROLES
from assistant.services import SERVICES_KEY
from assistant.settings import Settings
from assistant.tts.voice_coverage import coverage, record, sentences
from assistant.tts.voice_pack import VoicePack, key_of, pack_dir

staff = guarded(area="console", roles=STAFF_ROLES)
DIALECT_LABELS = {"yue": "粤语", "cmn": "普通话"}
STATUS_LABELS = {"passed": "已录，检查通过", "failed": "未通过自动检查，请重录", "": "未录"}
MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # a sentence is seconds long: 8 MB of WAV is minutes
_LOCKS: dict[str, asyncio.Lock] = {}  # per dialect: one manifest update at a time (one process serves the console)


def _pack(settings: Settings, dialect: str) -> VoicePack:
    return VoicePack.load(pack_dir(settings.paths.var_dir, settings.tts.voice_pack or "local", dialect), dialect)




@staff
async def voice_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    settings = request.app[SERVICES_KEY].settings
    dialect = request.query.get("dialect", "yue")
    if dialect not in DIALECTS:
        return error_page(404, "未知的方言", p)
    pack = await asyncio.to_thread(_pack, settings, dialect)
    report = coverage(pack, settings=settings)
    wanted = sentences(dialect, settings=settings)
    rows = []
    missing = set(report["missing"])
    for key, text in sorted(wanted.items(), key=lambda kv: kv[1] not in missing):
        entry = pack.entries.get(key, {})
        status = entry.get("check", {}).get("status", "")
        audio = (f'<audio controls preload="none" src="/console/voice/{dialect}/audio/{esc(entry["file"])}"></audio>'
                 if entry else "")
        heard = f'<br><small>识别为：{esc(entry["check"].get("heard", ""))}</small>' if status == "failed" else ""
        rows.append(
            f'<tr data-text="{esc(text)}"><td>{esc(text)}</td><td class="st">{esc(STATUS_LABELS.get(status, status))}'
            f'{heard}</td><td class="play">{audio}</td><td><button type="button" class="rec">录音</button></td></tr>')
    switch = " · ".join(f'<a href="/console/voice?dialect={d}">{esc(label)}</a>' for d, label in DIALECT_LABELS.items())
    body = f"""<p class="hint">{switch}。每句读一遍：按“录音”开始，再按一次结束。录音会自动去掉首尾静音、统一音量，并由语音识别回听核对；
未通过的录音不会播放。没有录音的句子由合成语音朗读。</p>
<p id="voice-progress" class="stat" data-dialect="{dialect}">已录 <span class="num">{report["recorded"]}</span> / {report["sentences"]} 句（{report["failed_checks"]} 句未通过自动检查）</p>
<table id="voice-table"><thead><tr><th scope=col>句子</th><th scope=col>状态</th><th scope=col>试听</th><th scope=col></th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<script src="/console/static/voice.js" defer></script>"""
    return page(f"录音：{DIALECT_LABELS[dialect]}语音包", body, principal=p, current="/console/voice")


@staff
async def voice_upload(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    import soundfile

    settings = request.app[SERVICES_KEY].settings
    dialect = request.match_info["dialect"]
    form = await request.post()
    text = str(form.get("text", "")).strip()
    upload = form.get("audio")
    if not text or upload is None or not hasattr(upload, "file"):
        raise ConsoleError("缺少句子或录音")
    if key_of(text, dialect) not in sentences(dialect, settings=settings):
        raise ConsoleError("这不是语音包里的句子")
    raw = upload.file.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        raise ConsoleError("录音太长")
    try:
        samples, rate = await asyncio.to_thread(soundfile.read, io.BytesIO(raw), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's own error types
        raise ConsoleError("无法读取录音（需要 WAV）") from exc
    async with _LOCKS.setdefault(dialect, asyncio.Lock()):  # two staff recording at once: no lost manifest update
        pack = await asyncio.to_thread(_pack, settings, dialect)
        check = await record(pack, text, samples.mean(axis=1), int(rate), settings=settings)
    await auth.audit(db, p, "voice_record", target_type="voice_pack", target_id=dialect,
                     detail={"text": text, "status": check["status"], "cer": check["cer"]}, ip=client_ip(request))
    await db.commit()
    report = coverage(pack, settings=settings)
    entry = pack.entries.get(key_of(text, dialect), {})
    return web.json_response({**check, "recorded": report["recorded"], "sentences": report["sentences"],
                              "failed_checks": report["failed_checks"], "file": entry.get("file", "")})


@staff
async def voice_audio(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
    pack = await asyncio.to_thread(_pack, request.app[SERVICES_KEY].settings, request.match_info["dialect"])
    name = request.match_info["file"]
    if name not in {e["file"] for e in pack.entries.values()} or not (pack.directory / name).is_file():
        return error_page(404, "录音文件不存在", p)
    return web.FileResponse(pack.directory / name, headers={"Cache-Control": "no-store"})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/console/voice", voice_page)
    dialect = "{dialect:" + "|".join(DIALECTS) + "}"
    router.add_post(f"/console/voice/{dialect}", voice_upload)
    router.add_get(f"/console/voice/{dialect}/audio/{{file}}", voice_audio)
