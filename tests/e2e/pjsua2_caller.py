"""A pjsip caller (pjsua2, null sound device) for the e2e tests, run as a subprocess:

    python tests/e2e/pjsua2_caller.py sip:assistant@127.0.0.1:5070 --audio-streams 2 --seconds 4 --wav out.wav
    python tests/e2e/pjsua2_caller.py "sip:assistant@127.0.0.1:5061;transport=tls" --srtp mandatory \
        --ca edge.crt --play tone.wav --dtmf 12 --wav out.wav          # SIP over TLS + SDES-SRTP via the edge

Calls the URI offering ``--audio-streams`` audio m= lines (the PyPI wheel is built without video, so no
video line), records what it hears on each active audio stream into ``--wav`` (the first one), hangs up
after ``--seconds`` of confirmed call, and prints one JSON line: whether the call was confirmed, the last
SIP status, the m= lines of the 200 OK it received (and whether it held ``a=crypto``), the RTP packets the
first audio stream sent and received (pjmedia's stream counters), and the SDES keys it offered (``inline:``
values, so a test can check no log holds them). ``--play``: a WAV played into the call (the caller's voice);
``--dtmf``: digits sent as RFC 2833/4733 events 1 s after the call is confirmed. Events are polled on the main thread (no pjsip
worker threads calling into Python).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

import pjsua2 as pj


class _Log(pj.LogWriter):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[str] = []
        self.offered_keys: set[str] = set()

    def write(self, entry) -> None:
        msg = entry.msg
        if "SIP/2.0 200" in msg and "m=" in msg and "INVITE" in msg:
            self.answers.append(msg)
        if "TX " in msg and "a=crypto" in msg:
            self.offered_keys.update(re.findall(r"inline:([A-Za-z0-9+/=]+)", msg))


class _Call(pj.Call):
    def __init__(self, acc, wav: str, play: str | None) -> None:
        super().__init__(acc)
        self.wav = wav
        self.play = play
        self.players: list = []
        self.confirmed = False
        self.disconnected = False
        self.status = 0
        self.recorders: list = []

    def onCallState(self, prm) -> None:
        info = self.getInfo()
        self.status = info.lastStatusCode
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True

    def onCallMediaState(self, prm) -> None:
        info = self.getInfo()
        for i, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                # again after a re-INVITE (hold/unhold): connecting twice is harmless, a new stream needs it
                if not self.recorders:
                    recorder = pj.AudioMediaRecorder()
                    recorder.createRecorder(self.wav)
                    self.recorders.append(recorder)
                    if self.play:
                        player = pj.AudioMediaPlayer()
                        player.createPlayer(self.play, pj.PJMEDIA_FILE_NO_LOOP)
                        self.players.append(player)
                self.getAudioMedia(i).startTransmit(self.recorders[0])
                for player in self.players:
                    player.startTransmit(self.getAudioMedia(i))
                break


def _m_lines(log: _Log) -> list[str]:
    return _m_lines_of(log.answers[-1] if log.answers else "")


def _m_lines_of(answer: str) -> list[str]:
    return [" ".join(m.split()[:3]) for m in re.findall(r"^m=(.*)$", answer.replace("\r", ""), re.M)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("--audio-streams", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--wav", required=True)
    ap.add_argument("--user", default="13800001111")
    ap.add_argument("--srtp", choices=["off", "optional", "mandatory"], default="off", help="SDES-SRTP use (RFC 4568)")
    ap.add_argument("--ca", help="CA file to verify the TLS server's certificate with (TLS URIs)")
    ap.add_argument("--cert", help="client certificate (PEM) presented in the TLS handshake (mutual TLS), with --key")
    ap.add_argument("--key", help="the client certificate's private key (PEM)")
    ap.add_argument("--play", help="WAV played into the call")
    ap.add_argument("--dtmf", default="", help="digits sent (RFC 2833) 1 s after the call is confirmed")
    ap.add_argument("--late-offer", action="store_true", help="an INVITE without SDP: the offer comes in the 200 OK, "
                    "the answer goes in the ACK (RFC 3261 §13.2.1)")
    ap.add_argument("--hold", default="", help="HOLD_S,UNHOLD_S: re-INVITE a=sendonly HOLD_S after the call is confirmed, "
                    "a=sendrecv UNHOLD_S after it; the RTP counters at unhold + 0.5 s are reported (rtp_at_unhold)")
    args = ap.parse_args()
    tls = "transport=tls" in args.uri

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    log = _Log()
    cfg.logConfig.writer = log
    cfg.logConfig.level = 5
    cfg.logConfig.consoleLevel = 5  # what reaches the writer (it prints nothing)
    cfg.logConfig.msgLogging = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    if tls:
        if args.ca:
            tcfg.tlsConfig.CaListFile = args.ca
            tcfg.tlsConfig.verifyServer = True
        if args.cert:
            tcfg.tlsConfig.certFile = args.cert
            tcfg.tlsConfig.privKeyFile = args.key
        tcfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
        ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
    else:
        ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()

    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{args.user}@127.0.0.1"
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"  # c= the signalling source (the gateway's c= policy)
    acfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    acfg.mediaConfig.srtpUse = {"off": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
                                "mandatory": pj.PJMEDIA_SRTP_MANDATORY}[args.srtp]
    acfg.mediaConfig.srtpSecureSignaling = 0  # SDES over sip: with transport=tls (not sips:)
    acc = pj.Account()
    acc.create(acfg)
    call = _Call(acc, args.wav, args.play)
    prm = pj.CallOpParam(True)
    prm.opt.audioCount = args.audio_streams
    prm.opt.videoCount = 0
    if args.late_offer:
        prm.opt.flag = pj.PJSUA_CALL_NO_SDP_OFFER
    call.makeCall(args.uri, prm)

    deadline = time.monotonic() + 15.0
    confirmed_at: float | None = None
    dtmf_sent = False
    rtp = {"tx": 0, "rx": 0}
    hold_s, unhold_s = (float(x) for x in args.hold.split(",")) if args.hold else (0.0, 0.0)
    held = unheld = False
    rtp_at_unhold: dict | None = None
    while not call.disconnected and time.monotonic() < deadline:
        ep.libHandleEvents(20)
        if call.confirmed and confirmed_at is None:
            confirmed_at = time.monotonic()
            deadline = confirmed_at + args.seconds
            # the answer's media port, while the call lasts (a test may send to it)
            print(json.dumps({"event": "confirmed", "answer_m_lines": _m_lines(log)}), flush=True)
        if args.dtmf and not dtmf_sent and confirmed_at is not None and time.monotonic() > confirmed_at + 1.0:
            call.dialDtmf(args.dtmf)
            dtmf_sent = True
        since = time.monotonic() - confirmed_at if confirmed_at is not None else -1.0
        if args.hold and not held and since > hold_s:
            call.setHold(pj.CallOpParam(True))
            held = True
        if args.hold and held and not unheld and since > unhold_s:
            prm = pj.CallOpParam(True)
            prm.opt.flag = pj.PJSUA_CALL_UNHOLD
            call.reinvite(prm)
            unheld = True
        if unheld and rtp_at_unhold is None and since > unhold_s + 0.5:
            rtp_at_unhold = dict(rtp)
        if call.confirmed and not call.disconnected:
            try:
                stat = call.getStreamStat(0).rtcp
                rtp = {"tx": stat.txStat.pkt, "rx": stat.rxStat.pkt}
            except Exception:  # the stream is gone (call ending)
                pass
    if not call.disconnected:
        call.hangup(pj.CallOpParam(True))
        for _ in range(50):
            ep.libHandleEvents(20)
    answer = log.answers[-1] if log.answers else ""
    m_lines = _m_lines(log)
    print(json.dumps({"confirmed": call.confirmed, "status": call.status, "answer_m_lines": m_lines,
                      "answer_crypto": "a=crypto" in answer,
                      "answer_c": re.findall(r"^c=IN IP[46] (\S+)", answer.replace("\r", ""), re.M), "rtp": rtp, "offered_keys": sorted(log.offered_keys),
                      "rtp_at_unhold": rtp_at_unhold, "answers": [_m_lines_of(a) + ["crypto" if "a=crypto" in a else "plain"] for a in log.answers]}),
          flush=True)
    call.recorders.clear()
    call.players.clear()
    del call
    acc.shutdown()
    ep.libDestroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
