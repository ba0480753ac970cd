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


class SmartTurnError(AssistantError):
    """The end-of-turn model could not judge a turn (the fixed end-of-turn silence decides instead)."""

    code = "smart_turn_failed"


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


# The HTTP status for an error code: the platform API, the console and the server's JSON middleware all
# answer with ``http_status(exc.code)``. A code not listed is the server's trouble (503: try again later),
# never blamed on the client.
HTTP_STATUS: dict[str, int] = {
    # the request itself is wrong
    "invalid": 400,
    "bad_argument": 400,
    "audio_input": 400,
    "screen_protocol": 400,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "exists": 409,
    # the service cannot do it now
    "store_failed": 503,
    "store_config": 503,
    "dialogue_failed": 503,
}
UNAVAILABLE_STATUS = 503


def http_status(code: str) -> int:
    """The HTTP status to answer an ``AssistantError`` with ``code`` (``not_found`` → 404, ...)."""
    return HTTP_STATUS.get(code, UNAVAILABLE_STATUS)
