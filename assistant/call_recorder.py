"""Writes each call and its turns into the platform store: who called, the transcript (with a redacted
copy for operators), ASR confidence, intents and the call's audio. A store outage is logged and never
ends the call (the order path has its own commit-before-confirm rule).

The audio is streamed to ``var/calls/<call_id>.wav`` while the call goes on (``assistant.audio.recording``:
stereo, left = caller, right = bot, header valid after every ~1 s flush), and the call row points at it from
the start, so a crash leaves a playable recording linked to its call."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from assistant.audio.recording import CallAudioRecorder, recording_path
from assistant.errors import AssistantError
from assistant.fraud_guard.pii_gate import personal_data_of, redact
from assistant.platform.store import CallUpdate
from assistant.session import CallSession
from assistant.turns import TurnRecord

PROOF_PLACEHOLDER = "[平安通身份证明]"


def _redact(text: str, personal: object | None = None) -> str:

    return redact(text, personal=personal)  # type: ignore[arg-type]


@dataclass(kw_only=True)
class CallRecorder:
    store: object  # assistant.platform.store.PlatformStore
    session: CallSession
    calls_dir: Path
    # the elder's data the stored redaction masks (name, address, numbers, safe phrase, family), loaded from
    # the store for the call's elder (again if the call's elder changes, e.g. identified during the call)
    _personal: object | None = field(default=None, init=False, repr=False)
    _personal_elder: int | None = field(default=None, init=False, repr=False)

    async def personal(self) -> object | None:
        elder_id = self.session.elder_id
        if elder_id is None:
            return None
        if self._personal_elder != elder_id:
            try:
                elder = await self.store.get_elder(elder_id)
                phrase = await self.store.safe_phrase(elder_id) if hasattr(self.store, "safe_phrase") else None
            except AssistantError as exc:
                logger.warning(f"call {self.session.call_id}: elder data for redaction unavailable: error[{exc.code}]")
                return self._personal
            self._personal = personal_data_of(elder, safe_phrase=phrase or "") if elder is not None else None
            self._personal_elder = elder_id
        return self._personal

    def audio_path(self) -> Path:
        return recording_path(self.calls_dir, self.session.call_id)

    async def started(self, *, audio_path: Path | None = None) -> None:

        s = self.session
        await self._safe(
            "start call",
            self.store.upsert_call(
                s.call_id,
                CallUpdate(
                    elder_id=s.elder_id,
                    direction=s.direction,
                    channel=s.channel,
                    caller_number=s.caller_number,
                    started_at=dt.datetime.now(dt.UTC),
                    dialect=s.dialect,
                    verification=s.verification,
                    audio_path=str(audio_path) if audio_path is not None else None,
                ),
            ),
        )

    async def on_turn(self, stage: str, record: TurnRecord) -> None:
        if stage != "reply":
            return
        cid = self.session.call_id
        elder_text = record.transcript
        personal = await self.personal()
        await self._safe(
            "record elder turn",
            self.store.add_turn(
                call_id=cid,
                turn=record.turn * 2 - 1,
                speaker="caller" if self.session.heard_speaker == "caller" else "elder",
                text=elder_text,
                text_redacted=_redact(elder_text, personal),
                asr_confidence=record.asr_confidence,
                intent=record.intent,
            ),
        )
        # the identity proof speaks the elder's safe phrase: transcripts keep only that a proof was given
        bot_text = "".join(PROOF_PLACEHOLDER if t in record.secret_texts else t for t in record.reply_texts)
        await self._safe(
            "record bot turn",
            self.store.add_turn(call_id=cid, turn=record.turn * 2, speaker="bot", text=bot_text, text_redacted=_redact(bot_text, personal)),
        )

    async def ended(self, *, audio_path: Path | None = None, outcome: str | None = None) -> None:

        s = self.session
        await self._safe(
            "end call",
            self.store.upsert_call(
                s.call_id,
                CallUpdate(
                    ended_at=dt.datetime.now(dt.UTC),
                    dialect=s.dialect,
                    verification=s.verification,
                    outcome=outcome,
                    audio_path=str(audio_path) if audio_path is not None else None,
                ),
            ),
        )

    async def _safe(self, what: str, coro) -> None:
        try:
            await coro
        except AssistantError as exc:
            logger.error(f"call {self.session.call_id}: {what} not stored: error[{exc.code}] {exc.message}")


class CallLifecycle(FrameProcessor):
    """Marks the call started/ended in the store (``recorder``, optional) and streams the caller's leg
    into ``recording`` (opened at StartFrame). The bot's leg comes from ``BotAudioTap`` after the output
    transport, which also closes the recording once the last audio has gone out."""

    def __init__(self, *, recorder: CallRecorder | None = None, recording: CallAudioRecorder | None = None, **kwargs):
        super().__init__(**kwargs)
        self._recorder = recorder
        self._recording = recording
        self._finished = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self._start()
        elif isinstance(frame, InputAudioRawFrame):
            if self._recording is not None:
                self._recording.caller(frame.audio, frame.sample_rate)
        elif isinstance(frame, EndFrame | CancelFrame) and not self._finished:
            self._finished = True
            if self._recorder is not None:
                await self._recorder.ended(audio_path=self._audio_path())
        await self.push_frame(frame, direction)

    def _audio_path(self) -> Path | None:
        rec = self._recording
        return rec.path if rec is not None and rec.error is None and rec.opened else None

    async def _start(self) -> None:
        if self._recording is not None and not self._recording.opened:
            try:
                await self._recording.open()
            except OSError as exc:
                logger.error(f"call recording {self._recording.path.name} not started: {exc}")
        if self._recorder is not None:
            await self._recorder.started(audio_path=self._audio_path())

    async def cleanup(self):
        await super().cleanup()
        if self._recording is not None:  # normally closed by BotAudioTap; a cancelled pipeline may not get there
            await self._recording.close()


class BotAudioTap(FrameProcessor):
    """After the output transport: the audio that went out on the line (pushed on after each write) →
    the recording's bot leg; EndFrame/CancelFrame close the recording (the goodbye included)."""

    def __init__(self, *, recording: CallAudioRecorder, **kwargs):
        super().__init__(**kwargs)
        self._recording = recording

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            self._recording.bot(frame.audio, frame.sample_rate)
        elif isinstance(frame, EndFrame | CancelFrame):
            await self._recording.close()
        await self.push_frame(frame, direction)
