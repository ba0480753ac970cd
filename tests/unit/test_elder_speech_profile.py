"""A call's session for an elder carries the elder's voice and slow-speaker wait (issue #19): the store's
profile → ``CallOpening`` (every pipeline with a store: inbound once identified, care calls, the screen)
→ ``CallSession.tts_voice`` / ``end_of_turn_max_silence_s`` → the end-of-turn policy."""

from __future__ import annotations

from assistant.audio.end_of_turn import EndOfTurnPolicy
from assistant.pipeline import CallOpening, PipelineServices
from assistant.session import CallSession
from assistant.settings import load_settings
from tests.platform_data import make_family

pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]


class _Personal:
    def __init__(self) -> None:
        self.personal = None

    def set_personal(self, personal) -> None:
        self.personal = personal


async def _opened(store, session: CallSession) -> CallSession:
    settings = load_settings()
    services = PipelineServices(settings=settings, rasa=None, store=store)  # type: ignore[arg-type]
    gate, guard = _Personal(), _Personal()
    opening = CallOpening(session=session, services=services, gate=gate, guard=guard)  # type: ignore[arg-type]
    await opening._open()
    assert gate.personal is not None  # the profile was read
    return session


async def test_session_for_an_elder_carries_voice_and_slow_speaker_wait(store):
    settings = load_settings()
    elder = await make_family(store)
    await store.update_elder_speech(elder.elder_id, tts_voice="pack-yue", end_of_turn_max_silence_s=4.0,
                                    voices={"pack-yue"})
    for channel, direction in (("phone", "inbound"), ("phone", "outbound"), ("screen", "inbound")):
        session = await _opened(store, CallSession(channel=channel, direction=direction, elder_id=elder.elder_id))
        assert (session.tts_voice, session.end_of_turn_max_silence_s) == ("pack-yue", 4.0)
        policy = EndOfTurnPolicy.from_settings(settings.audio, max_silence_s=session.end_of_turn_max_silence_s)
        assert policy.incomplete_max_silence_s == 4.0
    # a call that chose its own voice keeps it
    chosen = await _opened(store, CallSession(channel="phone", elder_id=elder.elder_id, tts_voice="espeak-yue"))
    assert chosen.tts_voice == "espeak-yue"


async def test_elder_without_choices_keeps_the_defaults(store):
    settings = load_settings()
    elder = await make_family(store)
    session = await _opened(store, CallSession(channel="phone", elder_id=elder.elder_id))
    assert (session.tts_voice, session.end_of_turn_max_silence_s) == (None, None)
    policy = EndOfTurnPolicy.from_settings(settings.audio, max_silence_s=session.end_of_turn_max_silence_s)
    assert policy.incomplete_max_silence_s == settings.audio.turn_incomplete_max_silence_s
