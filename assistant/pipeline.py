"""One pipecat pipeline per call or smart-screen session.

    input transport → VAD (webrtcvad) → STT → fraud guard → dialogue (Rasa) → PII gate → TTS → reply tap → output

``build_call_pipeline`` wires the stages around a ``CallSession``; transports (SIP gateway, smart-screen
WebSocket, sounddevice, or a WAV file in ``simulate``) supply the ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipecat.frames.frames import Frame, TTSAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import BaseTransport

from assistant.asr.stt_service import AssistantSTTService
from assistant.audio.vad import WebRtcVadAnalyzer, vad_params
from assistant.call_recorder import CallLifecycle, CallRecorder
from assistant.dialogue.processor import AlertSink, DialogueProcessor, IdentityProof
from assistant.dialogue.rasa_client import RasaClient
from assistant.session import CallSession
from assistant.settings import Settings
from assistant.tts.service import AssistantTTSService
from assistant.turns import TurnListener, TurnTracker


@dataclass(kw_only=True)
class PipelineServices:
    """What every call shares: settings, the Rasa client, and the hooks into the platform."""

    settings: Settings
    rasa: RasaClient
    on_alert: AlertSink | None = None
    identity_proof: IdentityProof | None = None
    turn_listeners: list[TurnListener] = field(default_factory=list)
    # the platform store (assistant.platform.store.PlatformStore) to record calls and turns in, if any
    store: object | None = None


@dataclass(kw_only=True)
class CallPipeline:
    pipeline: Pipeline
    session: CallSession
    tracker: TurnTracker


class ReplyTap(FrameProcessor):
    """Records reply audio per turn (first-audio time, WAV for ``simulate``) and passes everything on."""

    def __init__(self, *, tracker: TurnTracker, **kwargs):
        super().__init__(**kwargs)
        self._tracker = tracker

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            turn = frame.metadata.get("turn")
            owner = self._tracker.turns[turn - 1] if turn else None
            record = self._tracker.add_audio(frame.audio, frame.sample_rate, owner)
            if record is not None and len(record.reply_audio) == len(frame.audio):
                await self._tracker.notify("audio", record)
        await self.push_frame(frame, direction)


def _fraud_guard_stages(session: CallSession, services: PipelineServices) -> tuple[list[FrameProcessor], list[FrameProcessor]]:
    """The fraud guard watches transcripts (before dialogue); the PII gate checks every utterance (before TTS)."""
    try:
        from assistant.fraud_guard.guard import FraudGuard
        from assistant.fraud_guard.pii_gate import PiiGate
    except ModuleNotFoundError as exc:  # TODO(integrator): make mandatory once the fraud guard lands
        from loguru import logger

        logger.warning(f"fraud guard not available ({exc.name}): running without PII gate")
        return [], []

    before = [FraudGuard(session=session, settings=services.settings)]
    after = [PiiGate(session=session)]
    return before, after


def build_call_pipeline(
    *, session: CallSession, services: PipelineServices, transport: BaseTransport | None = None
) -> CallPipeline:
    settings = services.settings
    tracker = TurnTracker(listeners=list(services.turn_listeners))
    recording: list[FrameProcessor] = []
    if services.store is not None:
        recorder = CallRecorder(store=services.store, session=session, calls_dir=settings.paths.var_dir / "calls")
        tracker.listeners.append(recorder.on_turn)
        recording.append(CallLifecycle(recorder=recorder))
    vad = VADProcessor(
        vad_analyzer=WebRtcVadAnalyzer(aggressiveness=settings.audio.vad_aggressiveness, params=vad_params(settings.audio)),
        audio_idle_timeout=0,
    )
    guard_before, guard_after = _fraud_guard_stages(session, services)
    stages: list[FrameProcessor] = [
        vad,
        *recording,
        AssistantSTTService(session=session, settings=settings, tracker=tracker),
        *guard_before,
        DialogueProcessor(
            session=session,
            settings=settings,
            rasa=services.rasa,
            tracker=tracker,
            on_alert=services.on_alert,
            identity_proof=services.identity_proof,
        ),
        *guard_after,
        AssistantTTSService(session=session, settings=settings, tracker=tracker),
        ReplyTap(tracker=tracker),
    ]
    if transport is not None:
        stages = [transport.input(), *stages, transport.output()]
    return CallPipeline(pipeline=Pipeline(stages), session=session, tracker=tracker)


def pipeline_worker(call: CallPipeline, *, settings: Settings, out_sample_rate_hz: int | None = None) -> PipelineWorker:
    rate = settings.audio.pipeline_sample_rate_hz
    return PipelineWorker(
        call.pipeline,
        params=PipelineParams(audio_in_sample_rate=rate, audio_out_sample_rate=out_sample_rate_hz or rate),
        idle_timeout_secs=None,
        enable_rtvi=False,
        enable_turn_tracking=False,
        conversation_id=call.session.call_id,
    )
