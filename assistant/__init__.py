"""长者语音助手 — offline, voice-first assistant for elders."""

__version__ = "0.1.0"
