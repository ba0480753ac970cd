"""Fraud guard (#6): prove the platform's identity to the elder, gate personal data, detect scam calls.

Public pieces (import from the modules; nothing heavy happens at import):

- ``detector.ScamDetector`` / ``CallWatch`` — per-turn scam risk, type and evidence (cue layer + capped
  char n-gram model, ``ngram_weights.json``)
- ``guard.FraudGuard`` — pipecat processor after STT: risk per turn, dialect warning, ``on_flag(FraudFlag)``;
  ``guard.fraud_guard_for_app`` wires it to the store and ledger; ``guard.store_flag_sink(store)``
- ``pii_gate.PiiGate`` — pipecat processor before TTS; ``check_utterance``; ``redact``
- ``ledger.CallLedger`` — before-dial entries, one-time codes; module-level ``record_outbound_call`` for
  telephony
- ``identity.IdentityService`` / ``identity_proof_for_app`` — the spoken proof and the verification state
- ``api.setup_fraud_api`` — ``GET /api/verify?number=...`` for the smart screen
- ``eval_cmd`` — ``assistant eval fraud``; ``train`` — rebuild the n-gram weights from ../shared
"""
