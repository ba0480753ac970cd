"""Custom NLU components of the Rasa project (run inside the Rasa environment)."""
