"""The SIP edge in front of the gateway workers (issue #25): one kamailio and one rtpengine.

kamailio spreads calls over the workers (dispatcher: round robin, OPTIONS probing, failover) and, per trunk,
listens for SIP over UDP or TLS (its ``tls`` module). On a trunk every call's media is anchored at rtpengine
(driven by kamailio's ``rtpengine`` module over the ng control socket on loopback): rtpengine terminates SRTP
(SDES, RFC 4568) towards the trunk and speaks plain RTP/AVP to the worker, so a worker only ever sees plain RTP
from 127.0.0.1. Each trunk's SRTP policy:

- ``off``: plain RTP with the trunk (an SRTP-only offer is refused, 488; an opportunistic offer's
  ``a=crypto`` lines are removed, so the answer carries none);
- ``optional``: SRTP when the caller offers it (RTP/SAVP, or RTP/AVP with ``a=crypto``: RFC 8643 OSRTP, what
  pjsip's and most phones' "SRTP optional" send), plain RTP otherwise;
- ``mandatory``: an offer without an RTP/SAVP(F) stream is refused (488 + Warning).

A late offer (an INVITE without SDP, RFC 3261 §13.2.1) is taken on every trunk: the worker's offer in its 200 OK
goes through rtpengine to the caller as the trunk's policy asks (RTP/SAVP + SDES keys on ``mandatory``, RTP/AVP +
``a=crypto`` (OSRTP) on ``optional``, plain RTP/AVP on ``off``) and the caller's answer in the ACK back to plain
RTP for the worker. Re-INVITEs either way (hold/unhold) go through rtpengine too; it keeps each side's profile.

rtpengine latches on the first packet from the trunk side (immediate endpoint learning) and, with
``edge.strict_media_source``, drops packets from any other address afterwards (#15's strict media latching, on
the public side; without it rtpengine forwards them to the worker). Keys are never logged:
kamailio logs methods and Call-IDs only, rtpengine runs below debug level (its SDP dumps are debug).

**The public side** (``edge.public_host``, ``edge.public_media_ip``): the trunks' sockets listen on ``public_host``
(default 127.0.0.1) and rtpengine gets two logical interfaces, ``public`` (``public_media_ip``) and ``internal``
(127.0.0.1), each call's offer naming its direction (``direction=public direction=internal`` for a trunk's
offer, the reverse for a worker's), so the caller's SDP names the public address and the worker's 127.0.0.1.
The rule: every listener is loopback or authenticated, so a non-loopback ``public_host`` is refused at start
(``SetupError(code="edge_public_unauthenticated")``, naming the trunk) unless every trunk is TLS with a client
certificate required (``edge.tls_client_cert_trunks``) or with a source-IP allow-list (``check_exposure``).

**Who may connect on a trunk** (``route[TRUNK_PEER]``, before anything else in the request route, for every
request that arrives on the trunk's socket, in-dialog ones included): a mutual-TLS trunk can name the carrier its
certificate must belong to (``edge.tls_peer_names``: the subject CN and/or the subjectAltName DNS name), not only
the CA that signed it; any trunk can list the source networks it takes requests from
(``edge.trunk_source_networks``, kamailio's ``ipops`` ``is_in_subnet`` on ``$si``). Anyone else gets 403 and a
warning in kamailio's log; the gateway workers never see the request.

The plain dispatcher port (``KamailioDispatcher.port``) stays as before: no media anchoring, for an internal
network whose media may reach the workers directly.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from pathlib import Path

from assistant.errors import SetupError

CERT_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make-edge-cert.sh"
TRANSPORTS = ("udp", "tls")
SRTP_MODES = ("off", "optional", "mandatory")
# what every rtpengine call uses: the SDP rewritten to rtpengine's own address, ICE dropped (trunks and our
# workers do not use it); "trust-address": the c= of the SDP, not the signalling source (kamailio relays it)
_MEDIA_FLAGS = "trust-address replace-origin replace-session-connection ICE=remove"
# towards the worker: always plain RTP/AVP (rtpengine does the SRTP with the trunk)
_OFFER_FLAGS = {
    "off": _MEDIA_FLAGS + " transport-protocol=RTP/AVP SDES-off",
    "optional": _MEDIA_FLAGS + " transport-protocol=RTP/AVP OSRTP=accept",
    "mandatory": _MEDIA_FLAGS + " transport-protocol=RTP/AVP",
}
# late offer (an INVITE without SDP): the worker's offer in its 200 OK goes to the trunk as the trunk's policy
# asks: SDES-SRTP (RTP/SAVP), OSRTP (RTP/AVP + a=crypto: SRTP if the caller answers with a key) or plain RTP
_LATE_OFFER_FLAGS = {
    "off": _MEDIA_FLAGS + " transport-protocol=RTP/AVP SDES-off",
    "optional": _MEDIA_FLAGS + " transport-protocol=RTP/AVP OSRTP-offer",  # rtpengine 10.5: RTP/AVP + a=crypto
    "mandatory": _MEDIA_FLAGS + " transport-protocol=RTP/SAVP",
}


# a certificate name kamailio compares with (written into kamailio.cfg in quotes: no quote, backslash or $)
_PEER_NAME = re.compile(r"[a-z0-9*_][a-z0-9*_. @-]*")
PEER_NAME_KINDS = ("cn", "dns")  # the subject's CN / the subjectAltName's DNS name (kamailio 5.6: the first one)

LOOPBACK = "127.0.0.1"
# rtpengine's logical interfaces when the edge has a public side (two --interface=NAME/IP options)
PUBLIC_IF, INTERNAL_IF = "public", "internal"
# the offer's direction through kamailio's rtpengine module: from a trunk (public → internal) / from a worker
FROM_TRUNK = f" direction={PUBLIC_IF} direction={INTERNAL_IF}"
FROM_WORKER = f" direction={INTERNAL_IF} direction={PUBLIC_IF}"


@dataclass(frozen=True, kw_only=True)
class EdgeTrunk:
    """One trunk: a listening socket on the edge and its SRTP policy."""

    name: str
    transport: str  # "udp" | "tls"
    port: int
    srtp: str  # "off" | "optional" | "mandatory"
    client_cert: bool = False  # mutual TLS: the peer must present a certificate signed by TlsFiles.client_ca_file
    # mutual TLS: the names the peer's certificate must carry (lower case; each kind given: one of its names must match)
    peer_cns: tuple[str, ...] = ()  # subject CN
    peer_dns: tuple[str, ...] = ()  # subjectAltName DNS name (the certificate's first)
    source_networks: tuple[str, ...] = ()  # CIDRs the trunk takes requests from; () = any source

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise SetupError(f"edge trunk {self.name!r}: transport {self.transport!r} is not one of {TRANSPORTS}", code="edge_config")
        if self.srtp not in SRTP_MODES:
            raise SetupError(f"edge trunk {self.name!r}: srtp {self.srtp!r} is not one of {SRTP_MODES}", code="edge_config")
        if not (0 < self.port < 65536):
            raise SetupError(f"edge trunk {self.name!r}: port {self.port} out of range", code="edge_config")
        if not self.name.isidentifier():
            raise SetupError(f"edge trunk name {self.name!r}: letters, digits and _ only", code="edge_config")
        if self.client_cert and self.transport != "tls":
            raise SetupError(f"edge trunk {self.name!r}: a client certificate needs a tls trunk, not {self.transport}", code="edge_config")
        if (self.peer_cns or self.peer_dns) and not self.client_cert:
            raise SetupError(f"edge trunk {self.name!r}: peer certificate names need the trunk in edge.tls_client_cert_trunks "
                             "(a TLS trunk that requires a client certificate)", code="edge_config")
        for name in (*self.peer_cns, *self.peer_dns):
            if not _PEER_NAME.fullmatch(name):
                raise SetupError(f"edge trunk {self.name!r}: peer certificate name {name!r}: lower-case letters, digits and "
                                 "* _ . @ - (and spaces) only", code="edge_config")
        for net in self.source_networks:
            network(net, what=f"edge trunk {self.name!r} source network")


def network(text: str, *, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``text`` as an IP network (CIDR; a bare address is one host); host bits set or anything else that is not a
    network is ``SetupError(code="edge_config")``."""
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError as exc:
        raise SetupError(f"{what} {text!r}: not a network in CIDR notation, e.g. 192.0.2.0/24 ({exc})", code="edge_config") from None


def _per_trunk(entries: tuple[str, ...], *, setting: str, names: set[str]) -> dict[str, list[str]]:
    """``trunk:value`` entries by trunk; a trunk that does not exist is ``SetupError(code="edge_config")``."""
    out: dict[str, list[str]] = {}
    for entry in entries:
        trunk, sep, value = entry.strip().partition(":")
        if not sep or not value.strip():
            raise SetupError(f"{setting} entry {entry!r}: expected trunk:value", code="edge_config")
        if trunk not in names:
            raise SetupError(f"{setting} names no trunk: {trunk!r} (trunks: {sorted(names)})", code="edge_config")
        out.setdefault(trunk, []).append(value.strip())
    return out


def peer_names_of(settings, *, names: set[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """``edge.tls_peer_names`` (``trunk:cn=NAME`` / ``trunk:dns=NAME``) as {trunk: {"cn": names, "dns": names}}."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for trunk, values in _per_trunk(settings.tls_peer_names, setting="edge.tls_peer_names", names=names).items():
        kinds: dict[str, list[str]] = {k: [] for k in PEER_NAME_KINDS}
        for value in values:
            kind, sep, name = value.partition("=")
            if not sep or kind.strip().lower() not in kinds or not name.strip():
                raise SetupError(f"edge.tls_peer_names entry {trunk}:{value!r}: expected {trunk}:cn=NAME or {trunk}:dns=NAME",
                                 code="edge_config")
            kinds[kind.strip().lower()].append(name.strip().lower())
        out[trunk] = {k: tuple(v) for k, v in kinds.items()}
    return out


def parse_trunk(text: str) -> EdgeTrunk:
    """``name:transport:port:srtp`` (``edge.trunks`` entries), e.g. ``carrier:tls:5061:mandatory``."""
    parts = text.strip().split(":")
    if len(parts) != 4 or not parts[2].isdigit():
        raise SetupError(f"edge trunk {text!r}: expected name:transport:port:srtp, e.g. carrier:tls:5061:mandatory", code="edge_config")
    name, transport, port, srtp = parts
    return EdgeTrunk(name=name, transport=transport.lower(), port=int(port), srtp=srtp.lower())


def trunks_of(settings) -> tuple[EdgeTrunk, ...]:
    """``edge.trunks`` parsed (``settings``: ``EdgeSettings``); names and sockets must be unique. The trunks named in
    ``edge.tls_client_cert_trunks`` require a client certificate (mutual TLS; needs ``edge.tls_client_ca_file``),
    whose names ``edge.tls_peer_names`` may fix; ``edge.trunk_source_networks`` limits a trunk's sources. A trunk
    these settings name that does not exist, or a malformed entry, is ``SetupError(code="edge_config")``."""
    trunks = tuple(parse_trunk(t) for t in settings.trunks)
    if len({t.name for t in trunks}) < len(trunks) or len({(t.transport, t.port) for t in trunks}) < len(trunks):
        raise SetupError(f"edge trunks: a name or a socket is used twice: {settings.trunks}", code="edge_config")
    mutual = set(settings.tls_client_cert_trunks)
    if unknown := mutual - {t.name for t in trunks}:
        raise SetupError(f"edge.tls_client_cert_trunks names no trunk: {sorted(unknown)}", code="edge_config")
    if mutual and not settings.tls_client_ca_file:
        raise SetupError("edge.tls_client_cert_trunks needs edge.tls_client_ca_file (the CA of the peers' certificates)", code="edge_config")
    names = {t.name for t in trunks}
    peers = peer_names_of(settings, names=names)
    sources = _per_trunk(settings.trunk_source_networks, setting="edge.trunk_source_networks", names=names)
    trunks = tuple(replace(t, client_cert=t.name in mutual, peer_cns=peers.get(t.name, {}).get("cn", ()),
                           peer_dns=peers.get(t.name, {}).get("dns", ()),
                           source_networks=tuple(str(network(n, what=f"edge.trunk_source_networks entry {t.name}:"))
                                                 for n in sources.get(t.name, ())))
                   for t in trunks)
    check_exposure(trunks, public_host=settings.public_host)
    return trunks


def _ip(host: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise SetupError(f"{what} {host!r}: an IP address is needed (kamailio and rtpengine bind to it)", code="edge_config") from None


def is_public(host: str) -> bool:
    """``edge.public_host`` / ``public_media_ip`` other than 127.0.0.1: the edge has a public side."""
    return str(_ip(host, "edge address")) != LOOPBACK


def media_ip_of(settings) -> str:
    """``edge.public_media_ip``, or ``edge.public_host`` when it is empty."""
    return settings.public_media_ip or settings.public_host


def is_authenticated(trunk: EdgeTrunk) -> bool:
    """A TLS trunk that requires a client certificate, or that takes requests from its source networks only. TLS runs
    over TCP, whose handshake proves the source address (off the path it cannot be forged); a UDP trunk's source
    networks do not count: one forged INVITE from an allowed address would have the worker send its audio to the
    address in the forged SDP."""
    return trunk.transport == "tls" and (trunk.client_cert or bool(trunk.source_networks))


def check_exposure(trunks: tuple[EdgeTrunk, ...], *, public_host: str) -> None:
    """The project's rule: every listener is loopback or authenticated (``is_authenticated``). On a non-loopback
    ``public_host`` each trunk must be TLS with a client certificate required or with source networks; otherwise
    ``SetupError(code="edge_public_unauthenticated")`` naming the first such trunk."""
    if _ip(public_host, "edge.public_host").is_loopback:
        return
    for t in trunks:
        if not is_authenticated(t):
            why = " (a UDP source address can be forged: source networks do not count there)" if t.source_networks else ""
            raise SetupError(f"edge trunk {t.name!r} ({t.transport}) would listen on {public_host} without authentication{why}: "
                             "a non-loopback edge.public_host needs every trunk to be TLS, in edge.tls_client_cert_trunks "
                             "(a client certificate) or in edge.trunk_source_networks", code="edge_public_unauthenticated")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """The edge's TLS certificate and private key (PEM files; the key is only ever read by kamailio)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None  # CA bundle of the peers' client certificates (mutual TLS trunks)

    def check(self) -> None:
        for p in (self.cert_file, self.key_file, *([self.client_ca_file] if self.client_ca_file else [])):
            if not p.is_file():
                raise SetupError(f"edge TLS file missing: {p} (scripts/make-edge-cert.sh makes a self-signed pair)", code="edge_config")


def tls_files(settings, *, var_dir: Path) -> TlsFiles:
    """``edge.tls_cert_file`` / ``tls_key_file``, or the self-signed demo pair set-up made in var/edge/."""
    return TlsFiles(cert_file=Path(settings.tls_cert_file or var_dir / "edge" / "edge.crt"),
                    key_file=Path(settings.tls_key_file or var_dir / "edge" / "edge.key"),
                    client_ca_file=Path(settings.tls_client_ca_file) if settings.tls_client_ca_file else None)


async def make_demo_cert(directory: Path, *, public_host: str = LOOPBACK) -> TlsFiles:
    """The self-signed demo pair in ``directory`` (scripts/make-edge-cert.sh, as set-up runs it; kept if there);
    a non-loopback ``public_host`` is added to its SAN."""
    import asyncio

    extra = [public_host] if is_public(public_host) else []
    proc = await asyncio.create_subprocess_exec(str(CERT_SCRIPT), str(directory), *extra, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    if proc.returncode != 0:
        raise SetupError(f"making the edge's demo certificate failed: {err.decode(errors='replace')[-300:]}", code="edge_config")
    return TlsFiles(cert_file=directory / "edge.crt", key_file=directory / "edge.key")


def tls_domains_config(*, trunks: tuple[EdgeTrunk, ...], tls: TlsFiles, public_host: str = LOOPBACK) -> str:
    """kamailio's TLS domains file (the tls module's ``config``): the edge's certificate on every TLS socket; on a
    mutual-TLS trunk's socket the peer must present a certificate that ``tls.client_ca_file`` signs."""
    if any(t.client_cert for t in trunks) and tls.client_ca_file is None:
        raise SetupError("a trunk requiring client certificates needs the CA file that signs them", code="edge_config")
    common = f"method = TLSv1.2+\ncertificate = {tls.cert_file}\nprivate_key = {tls.key_file}\n"
    parts = [f"[server:default]\n{common}verify_certificate = no\nrequire_certificate = no\n",
             "[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"]
    parts += [f"[server:{_hostport(public_host, t.port)}]\n{common}verify_certificate = yes\nrequire_certificate = yes\nverify_depth = 3\n"
              f"ca_list = {tls.client_ca_file}\n" for t in trunks if t.client_cert]
    return "\n".join(parts)


def kamailio_config(*, port: int, list_file: Path, fr_timer_ms: int, trunks: tuple[EdgeTrunk, ...] = (),
                    tls: TlsFiles | None = None, rtpengine_ng_port: int = 0, strict_media_source: bool = True,
                    tls_domains_file: Path | None = None, public_host: str = LOOPBACK, public_media_ip: str = "") -> str:
    """The edge's kamailio.cfg: the dispatcher on ``udp:127.0.0.1:port`` and one listening socket per trunk on
    ``public_host`` (``check_exposure``: a non-loopback one only with mutual-TLS trunks; rtpengine then has the
    ``public`` and ``internal`` interfaces, ``rtpengine_argv(public_media_ip=…)``; ``public_media_ip`` "" = ``public_host``).
    ``tls_domains_file``: where ``tls_domains_config`` was written (needed when a trunk requires client certificates)."""
    check_exposure(trunks, public_host=public_host)
    if trunks and not rtpengine_ng_port:
        raise SetupError("edge trunks need rtpengine (its ng port)", code="edge_config")
    use_tls = any(t.transport == "tls" for t in trunks)
    if use_tls and tls is None:
        raise SetupError("a TLS trunk needs the edge's certificate and key", code="edge_config")
    if any(t.client_cert for t in trunks) and tls_domains_file is None:
        raise SetupError("a trunk requiring client certificates needs the TLS domains file", code="edge_config")
    listen = [f"listen=udp:127.0.0.1:{port}"] + [f"listen={t.transport}:{_hostport(public_host, t.port)}" for t in trunks]
    globals_ = ["#!KAMAILIO", "debug=2", "log_stderror=yes", "children=2", "auto_aliases=no", *listen]
    globals_ += ["disable_tcp=no", "enable_tls=yes", "tcp_children=2"] if use_tls else ["disable_tcp=yes"]
    modules = [
        'mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"',
        *(f'loadmodule "{m}.so"' for m in ("tm", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "xlog", "dispatcher")),
        f'modparam("tm", "fr_timer", {fr_timer_ms})',
        'modparam("tm", "fr_inv_timer", 60000)',
        'modparam("rr", "append_fromtag", 1)',
        f'modparam("dispatcher", "list_file", "{list_file}")',
        'modparam("dispatcher", "flags", 2)',
        'modparam("dispatcher", "ds_ping_interval", 1)',
        'modparam("dispatcher", "ds_probing_mode", 1)',
        'modparam("dispatcher", "ds_probing_threshold", 1)',
        'modparam("dispatcher", "ds_inactive_threshold", 1)',
        f'modparam("dispatcher", "ds_ping_from", "sip:dispatcher@127.0.0.1:{port}")',
    ]
    if use_tls:
        assert tls is not None
        modules += [
            'loadmodule "tls.so"',
            f'modparam("tls", "certificate", "{tls.cert_file}")',
            f'modparam("tls", "private_key", "{tls.key_file}")',
            'modparam("tls", "tls_method", "TLSv1.2+")',
            'modparam("tls", "verify_certificate", 0)',
            'modparam("tls", "require_certificate", 0)',
            *([f'modparam("tls", "config", "{tls_domains_file}")'] if tls_domains_file is not None else []),
            'loadmodule "nathelper.so"',  # add_contact_alias: in-dialog requests reuse the caller's TLS connection
        ]
    if trunks:
        modules += ['loadmodule "rtpengine.so"', 'loadmodule "sdpops.so"', 'loadmodule "textopsx.so"',
                    f'modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:{rtpengine_ng_port}")']
    if any(t.source_networks for t in trunks):
        modules += ['loadmodule "ipops.so"']  # is_in_subnet: the trunks' source networks
    return "\n".join(globals_ + modules) + "\n\n" + _routes(trunks, use_tls=use_tls, strict=strict_media_source,
                                                            public=is_public(public_media_ip or public_host))


def _routes(trunks: tuple[EdgeTrunk, ...], *, use_tls: bool, strict: bool, public: bool = False) -> str:
    # with a public side, every offer names rtpengine's interfaces: where it comes from, where it goes
    from_trunk, from_worker = (FROM_TRUNK, FROM_WORKER) if public else ("", "")
    anchored = bool(trunks)
    in_dialog_media = ""
    # a re-INVITE/UPDATE's offer: from the caller (downstream) or from the worker
    reoffer = (f'                    if (is_direction("downstream")) {{ rtpengine_offer("{_MEDIA_FLAGS}{from_trunk}"); }}\n'
               f'                    else {{ rtpengine_offer("{_MEDIA_FLAGS}{from_worker}"); }}\n') if public \
        else f'                    rtpengine_offer("{_MEDIA_FLAGS}");\n'
    if anchored:
        in_dialog_media = f"""            if (check_route_param("media=anchored")) {{
                # an SRTP-mandatory trunk stays encrypted: the caller cannot downgrade to plain RTP in a re-INVITE
                # (488) or in the ACK's answer to a late offer (body removed: the worker finds no answer and hangs up)
                $var(plain) = 0;
                if (check_route_param("srtp=mandatory") && is_direction("downstream") && has_body("application/sdp")
                        && !sdp_with_transport_like("RTP/SAVP")) {{ $var(plain) = 1; }}
                if (is_method("BYE")) {{ rtpengine_delete(); }}
                else if (is_method("INVITE|UPDATE") && has_body("application/sdp")) {{
                    if ($var(plain) == 1) {{
                        append_to_reply("Warning: 302 edge \\"SRTP (RTP/SAVP, SDES) is required on this trunk\\"\\r\\n");
                        sl_send_reply("488", "Not Acceptable Here");
                        exit;
                    }}
{reoffer}                    t_on_reply("MEDIA");
                }}
                else if (is_method("ACK") && has_body("application/sdp")) {{
                    if ($var(plain) == 1) {{
                        xlog("L_WARN", "$ci: a plain RTP answer on an SRTP-mandatory trunk: not passed on\\n");
                        remove_body();
                        remove_hf("Content-Type");
                    }} else {{ rtpengine_answer("{_MEDIA_FLAGS}"); }}
                }}
            }}
"""
    alias = "            handle_ruri_alias();\n" if use_tls else ""
    trunk_of = "".join(
        f'    if ($Rp == {t.port} && $pr == "{t.transport}") {{ $var(trunk) = "{t.name}"; $var(srtp) = "{t.srtp}"; }}\n'
        for t in trunks
    )
    strict_flag = " strict-source" if strict else ""
    offers = "".join(
        f'    if ($var(srtp) == "{mode}") {{ $var(flags) = "{flags}{strict_flag}{from_trunk}"; }}\n' for mode, flags in _OFFER_FLAGS.items()
    )
    late_offers = "".join(
        f'        if ($var(srtp) == "{mode}") {{ $avp(late_flags) = "{flags}{strict_flag}{from_worker}"; }}\n' for mode, flags in _LATE_OFFER_FLAGS.items()
    )
    trunk_route = ""
    if anchored:
        trunk_route = f"""
# a trunk's INVITE: its SRTP policy, then the media anchored at rtpengine (plain RTP/AVP to the worker)
route[TRUNK_MEDIA] {{
    $var(trunk) = "";
    $var(srtp) = "";
{trunk_of}    if ($var(trunk) == "") {{ return; }}
    if (!has_body()) {{
        # late offer (RFC 3261 §13.2.1): the worker offers in its 200 OK (rtpengine_offer there, with the trunk's
        # policy), the caller answers in the ACK (rtpengine_answer, in-dialog below)
{late_offers}        setflag(1);
        setflag(2);
        add_rr_param(";media=anchored");
        if ($var(srtp) == "mandatory") {{ add_rr_param(";srtp=mandatory"); }}
        xlog("L_INFO", "trunk $var(trunk) srtp=$var(srtp) $ci media anchored (late offer)\\n");
        t_on_reply("MEDIA");
        return;
    }}
    if (!has_body("application/sdp")) {{
        append_to_reply("Warning: 399 edge \\"An SDP offer is required on trunk $var(trunk)\\"\\r\\n");
        sl_send_reply("488", "Not Acceptable Here");
        exit;
    }}
    if ($var(srtp) == "mandatory" && !sdp_with_transport_like("RTP/SAVP")) {{
        append_to_reply("Warning: 302 edge \\"SRTP (RTP/SAVP, SDES) is required on trunk $var(trunk)\\"\\r\\n");
        sl_send_reply("488", "Not Acceptable Here");
        exit;
    }}
    if ($var(srtp) == "off" && !sdp_with_transport("RTP/AVP") && !sdp_with_transport("RTP/AVPF")) {{
        append_to_reply("Warning: 302 edge \\"SRTP is not offered on trunk $var(trunk)\\"\\r\\n");
        sl_send_reply("488", "Not Acceptable Here");
        exit;
    }}
    # plain means plain: an opportunistic offer's keys (RTP/AVP + a=crypto) are not taken up (rtpengine would)
    if ($var(srtp) == "off") {{ sdp_remove_line_by_prefix("a=crypto:"); msg_apply_changes(); }}
{offers}    if (!rtpengine_offer("$var(flags)")) {{ sl_send_reply("503", "Media relay unavailable"); exit; }}
    setflag(1);
    add_rr_param(";media=anchored");
    if ($var(srtp) == "mandatory") {{ add_rr_param(";srtp=mandatory"); }}
    xlog("L_INFO", "trunk $var(trunk) srtp=$var(srtp) $ci media anchored\\n");
    t_on_reply("MEDIA");
}}

onreply_route[MEDIA] {{
    if (isflagset(2)) {{
        # late offer: the 2xx carries the worker's offer (a 18x's SDP is only an offer with 100rel, which we don't do)
        if (status =~ "2[0-9][0-9]" && has_body("application/sdp")) {{ rtpengine_offer("$avp(late_flags)"); }}
    }} else if (status =~ "(18[03])|(2[0-9][0-9])" && has_body("application/sdp")) {{ rtpengine_answer("{_MEDIA_FLAGS}"); }}
}}
"""
    alias_initial = "        if ($pr == \"tls\") { add_contact_alias(); }\n" if use_tls else ""
    media_initial = "        route(TRUNK_MEDIA);\n" if anchored else ""
    # flag 1 (the transaction's): this INVITE's media was offered to rtpengine; a failed call releases it
    failure_delete = "    if (isflagset(1)) { rtpengine_delete(); }\n" if anchored else ""
    guarded = [t for t in trunks if t.source_networks or t.peer_cns or t.peer_dns]
    peer_initial = "    route(TRUNK_PEER);\n" if guarded else ""
    return f"""request_route {{
{peer_initial}    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{
{alias}{in_dialog_media}            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("OPTIONS") && uri==myself && $rU==$null) {{ sl_send_reply("200", "OK"); exit; }}
    if (is_method("INVITE")) {{
{alias_initial}{media_initial}        record_route();
    }}
    # 4 = round robin over the gateway workers that answer OPTIONS pings
    if (!ds_select_dst("1", "4", "2")) {{ sl_send_reply("503", "No gateway available"); exit; }}
    xlog("L_INFO", "dispatch $rm $ci to $du\\n");
    t_on_failure("NEXT_GATEWAY");
    t_relay();
    exit;
}}

failure_route[NEXT_GATEWAY] {{
    if (t_is_canceled()) {{
{failure_delete}        exit;
    }}
    if (t_check_status("408|500|503") && ds_next_dst()) {{
        xlog("L_WARN", "gateway failed, retrying $ci on $du\\n");
        t_on_failure("NEXT_GATEWAY");
        t_relay();
        exit;
    }}
{failure_delete}}}
{trunk_route}{_peer_route(guarded)}"""


def _any_of(pv: str, values: tuple[str, ...]) -> str:
    return " || ".join(f'{pv} == "{v}"' for v in values)


def _peer_route(trunks: list[EdgeTrunk]) -> str:
    """route[TRUNK_PEER]: a request on a trunk's socket from outside its source networks, or over mutual TLS from a
    certificate without the trunk's names, is logged and gets 403 (an ACK gets nothing). Fail closed: ``$var(ok)``
    is set only by a condition that held (a kamailio expression that cannot be evaluated is false)."""
    if not trunks:
        return ""
    checks = []
    for t in trunks:
        body = ""
        if t.source_networks:
            nets = " || ".join(f'is_in_subnet("$si", "{n}")' for n in t.source_networks)
            body += (f"        $var(ok) = 0;\n        if ({nets}) {{ $var(ok) = 1; }}\n"
                     f'        if ($var(ok) != 1) {{\n            xlog("L_WARN", "trunk {t.name} refused $rm $ci from $si: '
                     f'not in its source networks\\n");\n            $var(refused) = 1;\n        }}\n')
        if t.peer_cns or t.peer_dns:
            names = ["$tls_peer_verified == 1",
                     *([f"({_any_of('$(tls_peer_subject_cn{s.tolower})', t.peer_cns)})"] if t.peer_cns else []),
                     *([f"({_any_of('$(tls_peer_san_hostname{s.tolower})', t.peer_dns)})"] if t.peer_dns else [])]
            body += (f"        $var(ok) = 0;\n        if ({' && '.join(names)}) {{ $var(ok) = 1; }}\n"
                     f'        if ($var(ok) != 1) {{\n            xlog("L_WARN", "trunk {t.name} refused $rm $ci from $si: certificate '
                     f"cn=$tls_peer_subject_cn dns=$tls_peer_san_hostname is not the trunk's peer\\n\");\n"
                     "            $var(refused) = 1;\n        }\n")
        checks.append(f'    if ($Rp == {t.port} && $pr == "{t.transport}") {{\n{body}    }}\n')
    return f"""
# who may connect (edge.trunk_source_networks, edge.tls_peer_names): every request on a trunk's socket, in-dialog
# ones included; anyone else never reaches a worker
route[TRUNK_PEER] {{
    $var(refused) = 0;
{"".join(checks)}    if ($var(refused) == 1) {{
        if (!is_method("ACK")) {{ sl_send_reply("403", "Forbidden"); }}
        exit;
    }}
}}
"""


def rtpengine_argv(*, exe: str, ng_port: int, port_min: int, port_max: int, pidfile: Path,
                   public_media_ip: str = LOOPBACK) -> list[str]:
    """rtpengine in userspace (no kernel table): media on 127.0.0.1, or with a non-loopback ``public_media_ip``
    two logical interfaces, ``public`` there and ``internal`` on 127.0.0.1 (offers name them, ``FROM_TRUNK``); ng control on ``ng_port``
    (UDP) and nothing else (``--config-file=none``: not Debian's /etc/rtpengine/rtpengine.conf, whose CLI and
    HTTP ports would clash between two instances). Endpoint learning is immediate: a stream latches on its first
    packet (the default "delayed" keeps learning for 3 s, when any sender is taken, strict-source or not).
    Log level 6 (info): the SDP (and so the SDES keys) is only dumped at 7 (debug)."""
    interfaces = ([f"--interface={PUBLIC_IF}/{public_media_ip}", f"--interface={INTERNAL_IF}/{LOOPBACK}"]
                  if is_public(public_media_ip) else [f"--interface={LOOPBACK}"])
    return [exe, "--config-file=none", "--foreground", "--log-stderr", "--table=-1", *interfaces, f"--listen-ng=127.0.0.1:{ng_port}",
            f"--port-min={port_min}", f"--port-max={port_max}", "--log-level=6", "--num-threads=2",
            "--endpoint-learning=immediate", "--no-redis-required",
            f"--pidfile={pidfile}", "--delete-delay=0"]
