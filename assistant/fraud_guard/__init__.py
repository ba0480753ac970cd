"""Fraud guard (#6): prove the platform's identity to the elder, gate personal data, detect scam calls.

Public pieces (import from the modules; nothing heavy happens at import):

- ``detector.ScamDetector`` / ``CallWatch`` — per-turn scam risk, type and evidence (cue layer + capped
  char n-gram model, ``ngram_weights.json``)
- ``guard.FraudGuard`` — pipecat processor after STT: risk per turn, dialect warning, ``on_flag(FraudFlag)``;
  ``guard.guard_factory(settings=, store=, ledger=)`` wires it to the store and ledger; ``guard.store_flag_sink(store)``
- ``pii_gate.PiiGate`` — pipecat processor before TTS; ``check_utterance``; ``redact``
- ``ledger.CallLedger`` — before-dial entries, one-time codes (one per process, built by ``assistant.runtime``)
- ``identity.IdentityService`` — the spoken proof, the verification state, the keypad PIN
- ``api.setup_fraud_api`` — ``GET /api/verify?number=...`` for the smart screen
- ``eval_cmd`` — ``assistant eval fraud``; ``train`` — rebuild the n-gram weights from ../shared
"""
