"""Writes each call and its turns into the platform store: who called, the transcript (with a redacted
copy for operators), ASR confidence, intents and the call's audio. A store outage is logged and never
ends the call (the order path has its own commit-before-confirm rule)."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from loguru import logger
from pipecat.frames.frames import CancelFrame, EndFrame, Frame, InputAudioRawFrame, StartFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from assistant.audio.convert import PcmAudio, write_wav
from assistant.errors import AssistantError
from assistant.session import CallSession
from assistant.turns import TurnRecord

PROOF_PLACEHOLDER = "[平安通身份证明]"


def _redact(text: str) -> str:
    from assistant.fraud_guard.pii_gate import redact

    return redact(text)


@dataclass(kw_only=True)
class CallRecorder:
    store: object  # assistant.platform.store.PlatformStore
    session: CallSession
    calls_dir: Path

    async def started(self) -> None:
        from assistant.platform.store import CallUpdate

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
                ),
            ),
        )

    async def on_turn(self, stage: str, record: TurnRecord) -> None:
        if stage != "reply":
            return
        cid = self.session.call_id
        elder_text = record.transcript
        await self._safe(
            "record elder turn",
            self.store.add_turn(
                call_id=cid,
                turn=record.turn * 2 - 1,
                speaker="caller" if self.session.heard_speaker == "caller" else "elder",
                text=elder_text,
                text_redacted=_redact(elder_text),
                asr_confidence=record.asr_confidence,
                intent=record.intent,
            ),
        )
        # the identity proof speaks the elder's safe phrase: transcripts keep only that a proof was given
        bot_text = "".join(PROOF_PLACEHOLDER if t in record.secret_texts else t for t in record.reply_texts)
        await self._safe(
            "record bot turn",
            self.store.add_turn(call_id=cid, turn=record.turn * 2, speaker="bot", text=bot_text, text_redacted=_redact(bot_text)),
        )

    async def ended(self, *, audio: PcmAudio | None = None, outcome: str | None = None) -> None:
        from assistant.platform.store import CallUpdate

        audio_path = await asyncio.to_thread(self._keep_audio, audio) if audio is not None else None
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
                    audio_path=audio_path,
                ),
            ),
        )

    def _keep_audio(self, audio: PcmAudio) -> str | None:
        if not audio.pcm:
            return None
        return str(write_wav(self.calls_dir / f"{self.session.call_id}.wav", audio))

    async def _safe(self, what: str, coro) -> None:
        try:
            await coro
        except AssistantError as exc:
            logger.error(f"call {self.session.call_id}: {what} not stored: error[{exc.code}] {exc.message}")


MAX_RECORDED_S = 15 * 60


class CallLifecycle(FrameProcessor):
    """Marks the call started/ended in the store and keeps the caller's audio for operator playback."""

    def __init__(self, *, recorder: CallRecorder, **kwargs):
        super().__init__(**kwargs)
        self._recorder = recorder
        self._audio = bytearray()
        self._rate = 16000
        self._finished = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self._recorder.started()
        elif isinstance(frame, InputAudioRawFrame):
            self._rate = frame.sample_rate
            if len(self._audio) < MAX_RECORDED_S * self._rate * 2:
                self._audio.extend(frame.audio)
        elif isinstance(frame, EndFrame | CancelFrame) and not self._finished:
            self._finished = True
            await self._recorder.ended(audio=PcmAudio(pcm=bytes(self._audio), sample_rate_hz=self._rate))
        await self.push_frame(frame, direction)
