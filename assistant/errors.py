"""Coded error classes, one per stage boundary.

Every error that crosses a stage carries a stable ``code`` (used in logs, JSON output and tests) and a
one-line human message. Command-line entry points print ``error[<code>]: <message>`` and never a traceback.
"""

from __future__ import annotations


class AssistantError(Exception):
    """Base class: ``code`` is stable, ``message`` is one line for a person to read."""

    code: str = "assistant_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class AudioInputError(AssistantError):
    """Audio could not be read or converted (not audio, empty, unsupported format)."""

    code = "audio_input"


class ModelMissingError(AssistantError):
    """A model file is not provisioned; the message names the command that fixes it."""

    code = "model_missing"


class AsrError(AssistantError):
    code = "asr_failed"


class DialogueError(AssistantError):
    """Rasa is down, slow or answered something we cannot use."""

    code = "dialogue_failed"


class TtsError(AssistantError):
    code = "tts_failed"


class StoreError(AssistantError):
    """The platform store (database) could not be reached or refused a write."""

    code = "store_failed"


class FraudGuardError(AssistantError):
    code = "fraud_guard"


class TelephonyError(AssistantError):
    code = "telephony_failed"


class SetupError(AssistantError):
    """The environment is incomplete (Rasa env missing, Debian package missing, ...)."""

    code = "setup_incomplete"
