"""Chinese text normalisation shared by ASR, NLU and every evaluation (script, numerals, punctuation, CER)."""
