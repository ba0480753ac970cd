"""Offline speech recognition: one recognizer interface, several engines (faster-whisper, vosk, sherpa-onnx)."""
