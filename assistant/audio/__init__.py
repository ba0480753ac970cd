"""Audio helpers shared by every stage: G.711 codecs, WAV reading, the one resampler, the phone channel."""
