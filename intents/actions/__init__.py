"""rasa-sdk actions of the 长者语音助手 (run by ``python -m rasa run actions`` with cwd ``intents/``)."""
