"""The console's elder page: staff see an elder's speech and screen settings and change them (the voice
that speaks to the elder, a slow speaker's wait, dialect, rate, volume, text size; issue #19) — the same
form and action as the family portal, audited as ``elder_settings``."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console import actions
from assistant.console.auth import Principal
from assistant.console.render import DIALECT_LABELS, csrf_field, elder_settings_form, error_page, esc, page
from assistant.console.web import client_ip, guarded
from assistant.platform.models import Elder
from assistant.platform.models_console import STAFF_ROLES
from assistant.services import SERVICES_KEY
from assistant.tts.registry import VOICES

staff = guarded(area="console", roles=STAFF_ROLES)


def elder_id_of(request: web.Request) -> int:
    """The ``{elder_id}`` of an elder page's route (the settings and medication pages share it)."""
    return int(request.match_info["elder_id"])


@staff
async def elder_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    elder = await db.get(Elder, elder_id_of(request))
    if elder is None:
        return error_page(404, "没有这位长者。", p)
    base = f"/console/elders/{elder.id}"
    flash = '<p class="flash" role="status">设置已保存。</p>' if request.query.get("done") == "settings" else ""
    body = f"""{flash}
<p class="hint">{esc(elder.name)} · {esc(elder.district)} · {esc(DIALECT_LABELS.get(elder.dialect, elder.dialect))}</p>
<section aria-labelledby="h-settings" class="card"><h2 id="h-settings">语音和屏幕设置</h2>
<p class="hint">“声音”选真人录音时，录好的句子用录音播放，没录的句子仍用合成声音。“说话速度”选说话慢或很慢时，
长者停顿后要多等一会儿才算说完，不会被打断。</p>
{elder_settings_form(elder, action=f"{base}/settings", csrf=csrf_field(p), voices=VOICES)}</section>
<p><a href="{base}/medication">吃药提醒</a></p>"""
    return page(f"{elder.name}的设置", body, principal=p)


@staff
async def elder_settings(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
    elder_id = elder_id_of(request)
    form = await request.post()

    def f(name: str) -> str:
        return str(form.get(name, ""))

    await actions.update_elder_settings(db, request.app[SERVICES_KEY].store, p, elder_id, dialect=f("dialect"),
                                        rate_wpm=f("rate_wpm"), volume=f("volume"), text_size=f("text_size"),
                                        voice=f("voice"), max_silence_s=f("max_silence_s"), ip=client_ip(request))
    raise web.HTTPSeeOther(f"/console/elders/{elder_id}?done=settings")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(r"/console/elders/{elder_id:\d+}", elder_page)
    router.add_post(r"/console/elders/{elder_id:\d+}/settings", elder_settings)
