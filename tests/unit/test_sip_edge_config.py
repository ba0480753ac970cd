"""The SIP edge's settings and kamailio configuration (telephony.edge); the calls through it are in
tests/e2e/test_sip_edge.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.errors import SetupError
from assistant.settings import EdgeSettings
from telephony.edge import (
    EdgeTrunk,
    TlsFiles,
    kamailio_config,
    parse_trunk,
    rtpengine_argv,
    tls_domains_config,
    tls_files,
    trunks_of,
)


def test_a_trunk_is_name_transport_port_srtp():
    assert parse_trunk("carrier:TLS:5061:Mandatory") == EdgeTrunk(name="carrier", transport="tls", port=5061, srtp="mandatory")


@pytest.mark.parametrize("bad", ["carrier:tls:5061", "carrier:tcp:5061:off", "carrier:tls:5061:sometimes", "carrier:tls:x:off",
                                 "a-b:udp:5060:off", "carrier:udp:0:off"])
def test_a_malformed_trunk_is_a_coded_setup_error(bad):
    with pytest.raises(SetupError) as err:
        parse_trunk(bad)
    assert err.value.code == "edge_config"


def test_default_trunks_parse_and_duplicates_are_refused():
    assert [t.name for t in trunks_of(EdgeSettings())] == ["carrier", "pbx"]
    with pytest.raises(SetupError):
        trunks_of(EdgeSettings(trunks=("a:udp:5060:off", "b:udp:5060:optional")))


def test_tls_files_default_to_the_demo_pair_in_var(tmp_path):
    files = tls_files(EdgeSettings(), var_dir=tmp_path)
    assert files == TlsFiles(cert_file=tmp_path / "edge" / "edge.crt", key_file=tmp_path / "edge" / "edge.key")
    own = tls_files(EdgeSettings(tls_cert_file="/etc/x.crt", tls_key_file="/etc/x.key"), var_dir=tmp_path)
    assert own.cert_file == Path("/etc/x.crt")


def test_kamailio_config_listens_per_trunk_and_anchors_media():
    trunks = (EdgeTrunk(name="carrier", transport="tls", port=5061, srtp="mandatory"), EdgeTrunk(name="pbx", transport="udp", port=5060, srtp="off"))
    cfg = kamailio_config(port=5080, list_file=Path("/x/ds.list"), fr_timer_ms=1500, trunks=trunks,
                          tls=TlsFiles(cert_file=Path("/c.crt"), key_file=Path("/c.key")), rtpengine_ng_port=2223)
    for line in ("listen=udp:127.0.0.1:5080", "listen=tls:127.0.0.1:5061", "listen=udp:127.0.0.1:5060", "enable_tls=yes",
                 'modparam("tls", "private_key", "/c.key")', 'modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:2223")'):
        assert line in cfg
    assert '$Rp == 5061 && $pr == "tls"' in cfg and 'sdp_with_transport_like("RTP/SAVP")' in cfg
    assert "strict-source" in cfg and "transport-protocol=RTP/AVP" in cfg


def test_the_plain_dispatcher_has_no_tls_and_no_media_anchoring():
    cfg = kamailio_config(port=5080, list_file=Path("/x/ds.list"), fr_timer_ms=1500)
    assert "disable_tcp=yes" in cfg and "tls" not in cfg and "rtpengine" not in cfg


def test_a_tls_trunk_without_certificate_or_rtpengine_is_refused():
    tls_trunk = (EdgeTrunk(name="carrier", transport="tls", port=5061, srtp="optional"),)
    with pytest.raises(SetupError):
        kamailio_config(port=5080, list_file=Path("/x"), fr_timer_ms=1500, trunks=tls_trunk, rtpengine_ng_port=2223)
    with pytest.raises(SetupError):
        kamailio_config(port=5080, list_file=Path("/x"), fr_timer_ms=1500, trunks=tls_trunk, tls=TlsFiles(cert_file=Path("/c"), key_file=Path("/k")))


def test_mutual_tls_trunks_come_from_settings_and_need_a_client_ca():
    settings = EdgeSettings(trunks=("carrier:tls:5061:mandatory", "ops:tls:5062:mandatory", "pbx:udp:5060:off"),
                            tls_client_cert_trunks=("ops",), tls_client_ca_file="/etc/peers-ca.crt")
    assert [t.client_cert for t in trunks_of(settings)] == [False, True, False]
    assert tls_files(settings, var_dir=Path("/v")).client_ca_file == Path("/etc/peers-ca.crt")
    assert tls_files(EdgeSettings(), var_dir=Path("/v")).client_ca_file is None
    for bad in (EdgeSettings(trunks=settings.trunks, tls_client_cert_trunks=("ops",)),  # no CA
                EdgeSettings(trunks=settings.trunks, tls_client_cert_trunks=("nobody",), tls_client_ca_file="/x"),
                EdgeSettings(trunks=settings.trunks, tls_client_cert_trunks=("pbx",), tls_client_ca_file="/x")):  # udp
        with pytest.raises(SetupError) as err:
            trunks_of(bad)
        assert err.value.code == "edge_config"


def test_a_mutual_tls_trunk_gets_its_own_tls_domain_that_requires_a_verified_client_certificate(tmp_path):
    tls = TlsFiles(cert_file=tmp_path / "e.crt", key_file=tmp_path / "e.key", client_ca_file=tmp_path / "peers.crt")
    trunks = (EdgeTrunk(name="carrier", transport="tls", port=5061, srtp="mandatory"),
              EdgeTrunk(name="ops", transport="tls", port=5062, srtp="mandatory", client_cert=True))
    domains = tls_domains_config(trunks=trunks, tls=tls)
    server = domains.split("[server:127.0.0.1:5062]")[1]
    assert "require_certificate = yes" in server and "verify_certificate = yes" in server
    assert f"ca_list = {tmp_path / 'peers.crt'}" in server
    assert "[server:127.0.0.1:5061]" not in domains  # the other TLS trunk: the default domain, no client certificate
    assert "require_certificate = no" in domains.split("[server:default]")[1].split("[")[0]
    cfg = kamailio_config(port=5080, list_file=tmp_path / "ds.list", fr_timer_ms=1500, trunks=trunks, tls=tls,
                          rtpengine_ng_port=2223, tls_domains_file=tmp_path / "tls.cfg")
    assert f'modparam("tls", "config", "{tmp_path / "tls.cfg"}")' in cfg
    with pytest.raises(SetupError):
        kamailio_config(port=5080, list_file=tmp_path / "ds.list", fr_timer_ms=1500, trunks=trunks, tls=tls, rtpengine_ng_port=2223)
    with pytest.raises(SetupError):
        tls_domains_config(trunks=trunks, tls=TlsFiles(cert_file=tls.cert_file, key_file=tls.key_file))


PUBLIC_TRUNKS = ("carrier:tls:5061:mandatory", "ops:tls:5062:optional", "pbx:udp:5060:off")


@pytest.mark.parametrize(("mutual", "named"), [((), "carrier"), (("carrier",), "ops"), (("carrier", "ops"), "pbx")])
def test_a_public_host_is_refused_while_a_trunk_is_unauthenticated_and_the_error_names_it(mutual, named):
    """Every listener is loopback or authenticated: a non-loopback edge.public_host needs every trunk to be TLS with
    a client certificate required or source networks (a UDP trunk can never be public)."""
    settings = EdgeSettings(trunks=PUBLIC_TRUNKS, public_host="203.0.113.7", tls_client_cert_trunks=mutual, tls_client_ca_file="/ca")
    with pytest.raises(SetupError) as err:
        trunks_of(settings)
    assert err.value.code == "edge_public_unauthenticated"
    assert repr(named) in str(err.value)
    # the same trunks on loopback (the default: make run) are fine, and kamailio_config applies the rule itself
    assert len(trunks_of(EdgeSettings(trunks=PUBLIC_TRUNKS, tls_client_cert_trunks=mutual, tls_client_ca_file="/ca"))) == 3
    with pytest.raises(SetupError) as err:
        kamailio_config(port=5080, list_file=Path("/x"), fr_timer_ms=1500, trunks=(parse_trunk("pbx:udp:5060:off"),),
                        rtpengine_ng_port=2223, public_host="203.0.113.7")
    assert err.value.code == "edge_public_unauthenticated" and "'pbx'" in str(err.value)


def test_a_public_host_with_only_mutual_tls_trunks_listens_there_and_anchors_media_on_two_interfaces(tmp_path):
    settings = EdgeSettings(trunks=("carrier:tls:5061:mandatory", "ops:tls:5062:optional"), public_host="203.0.113.7",
                            tls_client_cert_trunks=("carrier", "ops"), tls_client_ca_file=str(tmp_path / "peers.crt"))
    trunks = trunks_of(settings)
    tls = tls_files(settings, var_dir=tmp_path)
    cfg = kamailio_config(port=5080, list_file=tmp_path / "ds.list", fr_timer_ms=1500, trunks=trunks, tls=tls,
                          rtpengine_ng_port=2223, tls_domains_file=tmp_path / "tls.cfg", public_host="203.0.113.7")
    assert "listen=udp:127.0.0.1:5080" in cfg  # the dispatcher / the workers' side stays on loopback
    assert "listen=tls:203.0.113.7:5061" in cfg and "listen=tls:203.0.113.7:5062" in cfg
    assert "listen=tls:127.0.0.1" not in cfg
    # a trunk's offer goes public → internal; the worker's (late offer in its 200, its re-INVITEs) internal → public
    assert cfg.count("direction=public direction=internal") == 3 + 1  # the three SRTP policies + the caller's re-INVITE
    assert cfg.count("direction=internal direction=public") == 3 + 1  # the three late-offer policies + the worker's re-INVITE
    domains = tls_domains_config(trunks=trunks, tls=tls, public_host="203.0.113.7")
    assert "[server:203.0.113.7:5061]" in domains and "[server:127.0.0.1:" not in domains
    argv = rtpengine_argv(exe="rtpengine", ng_port=2223, port_min=30000, port_max=30999, pidfile=tmp_path / "p",
                          public_media_ip="198.51.100.9")
    assert "--interface=public/198.51.100.9" in argv and "--interface=internal/127.0.0.1" in argv
    assert "--listen-ng=127.0.0.1:2223" in argv


def test_the_default_loopback_edge_names_no_interfaces():
    """Unchanged behaviour (make run): one rtpengine interface on 127.0.0.1 and no direction flags."""
    trunks = trunks_of(EdgeSettings())
    cfg = kamailio_config(port=5080, list_file=Path("/x"), fr_timer_ms=1500, trunks=trunks,
                          tls=TlsFiles(cert_file=Path("/c"), key_file=Path("/k")), rtpengine_ng_port=2223)
    assert "direction=" not in cfg and "listen=tls:127.0.0.1:5061" in cfg
    argv = rtpengine_argv(exe="rtpengine", ng_port=2223, port_min=30000, port_max=30999, pidfile=Path("/p"))
    assert "--interface=127.0.0.1" in argv and not any(a.startswith("--interface=public") for a in argv)
    with pytest.raises(SetupError) as err:
        trunks_of(EdgeSettings(public_host="edge.example.com"))
    assert err.value.code == "edge_config"


WHO_TRUNKS = ("carrier:tls:5061:mandatory", "ops:tls:5062:optional", "pbx:udp:5060:off")


def who_settings(**kw) -> EdgeSettings:
    return EdgeSettings(**{"trunks": WHO_TRUNKS, "tls_client_cert_trunks": ("carrier",), "tls_client_ca_file": "/ca", **kw})


def test_peer_names_and_source_networks_come_from_settings_per_trunk():
    trunks = {t.name: t for t in trunks_of(who_settings(
        tls_peer_names=("carrier:cn=SBC.Carrier-A.example", "carrier:cn=sbc2.carrier-a.example", "carrier:dns=sbc.carrier-a.example"),
        trunk_source_networks=("pbx:192.0.2.0/24", "pbx:198.51.100.7", "ops:2001:db8::/32")))}
    assert trunks["carrier"].peer_cns == ("sbc.carrier-a.example", "sbc2.carrier-a.example")  # names compare in lower case
    assert trunks["carrier"].peer_dns == ("sbc.carrier-a.example",)
    assert trunks["pbx"].source_networks == ("192.0.2.0/24", "198.51.100.7/32")  # a bare address is one host
    assert trunks["ops"].source_networks == ("2001:db8::/32",)
    assert trunks["ops"].peer_cns == trunks["pbx"].peer_cns == () and trunks["carrier"].source_networks == ()


@pytest.mark.parametrize(("kw", "says"), [
    ({"tls_peer_names": ("nobody:cn=x",)}, "names no trunk: 'nobody'"),
    ({"trunk_source_networks": ("nobody:10.0.0.0/8",)}, "names no trunk: 'nobody'"),
    ({"trunk_source_networks": ("pbx:10.0.0.300/8",)}, "not a network"),
    ({"trunk_source_networks": ("pbx:10.0.0.1/8",)}, "has host bits set"),  # 10.0.0.1/8: which one was meant?
    ({"trunk_source_networks": ("pbx",)}, "expected trunk:value"),
    ({"tls_peer_names": ("carrier:o=carrier-a",)}, "expected carrier:cn=NAME or carrier:dns=NAME"),
    ({"tls_peer_names": ("carrier:sbc.carrier-a.example",)}, "expected carrier:cn=NAME"),
    ({"tls_peer_names": ('carrier:cn=a"; exit; "',)}, "lower-case letters"),  # never into kamailio.cfg
    ({"tls_peer_names": ("carrier:cn=$si",)}, "lower-case letters"),
    ({"tls_peer_names": ("ops:cn=sbc.carrier-a.example",)}, "edge.tls_client_cert_trunks"),  # no client certificate there
])
def test_a_wrong_peer_name_or_source_network_is_a_coded_setup_error(kw, says):
    with pytest.raises(SetupError) as err:
        trunks_of(who_settings(**kw))
    assert err.value.code == "edge_config" and says in str(err.value), str(err.value)


def test_kamailio_refuses_a_request_from_outside_the_source_networks_or_from_another_certificate_first():
    """route[TRUNK_PEER] runs before anything else for every request (in-dialog ones too) and fails closed."""
    trunks = trunks_of(who_settings(tls_peer_names=("carrier:cn=sbc.carrier-a.example", "carrier:dns=sbc.carrier-a.example"),
                                    trunk_source_networks=("pbx:192.0.2.0/24", "pbx:198.51.100.7")))
    cfg = kamailio_config(port=5080, list_file=Path("/x"), fr_timer_ms=1500, trunks=trunks,
                          tls=TlsFiles(cert_file=Path("/c"), key_file=Path("/k"), client_ca_file=Path("/ca")),
                          rtpengine_ng_port=2223, tls_domains_file=Path("/tls.cfg"))
    assert cfg.split("request_route {\n")[1].startswith("    route(TRUNK_PEER);\n")
    assert 'loadmodule "ipops.so"' in cfg
    peer = cfg.split("route[TRUNK_PEER] {")[1]
    carrier = peer.split('if ($Rp == 5061 && $pr == "tls") {')[1].split("\n    }\n")[0]
    assert ('if ($tls_peer_verified == 1 && ($(tls_peer_subject_cn{s.tolower}) == "sbc.carrier-a.example") '
            '&& ($(tls_peer_san_hostname{s.tolower}) == "sbc.carrier-a.example")) { $var(ok) = 1; }') in carrier
    pbx = peer.split('if ($Rp == 5060 && $pr == "udp") {')[1].split("\n    }\n")[0]
    assert 'if (is_in_subnet("$si", "192.0.2.0/24") || is_in_subnet("$si", "198.51.100.7/32")) { $var(ok) = 1; }' in pbx
    for block in (carrier, pbx):
        assert "$var(ok) = 0;" in block and "if ($var(ok) != 1) {" in block and "$var(refused) = 1;" in block
        assert 'xlog("L_WARN", "trunk ' in block
    assert '$Rp == 5062' not in peer  # ops: no rule, no check
    assert 'if (!is_method("ACK")) { sl_send_reply("403", "Forbidden"); }' in peer
    default = kamailio_config(port=5080, list_file=Path("/x"), fr_timer_ms=1500, trunks=trunks_of(EdgeSettings()),
                              tls=TlsFiles(cert_file=Path("/c"), key_file=Path("/k")), rtpengine_ng_port=2223)
    assert "TRUNK_PEER" not in default and "ipops" not in default and "tls_peer" not in default


def test_a_public_host_takes_a_tls_trunk_with_source_networks_but_never_a_udp_one():
    """TLS runs over TCP, whose handshake proves the source address; a UDP source can be forged (one forged INVITE
    from an allowed address would have the worker send its audio wherever the forged SDP says)."""
    public = {"public_host": "203.0.113.7", "trunks": ("carrier:tls:5061:mandatory", "ops:tls:5062:optional")}
    trunks = trunks_of(who_settings(**public, trunk_source_networks=("ops:198.51.100.0/24",)))
    assert [t.name for t in trunks] == ["carrier", "ops"]
    with pytest.raises(SetupError) as err:
        trunks_of(who_settings(**public))  # ops: TLS, neither a client certificate nor source networks
    assert err.value.code == "edge_public_unauthenticated" and "'ops'" in str(err.value)
    with pytest.raises(SetupError) as err:
        trunks_of(who_settings(public_host="203.0.113.7", trunks=("carrier:tls:5061:mandatory", "pbx:udp:5060:off"),
                               trunk_source_networks=("pbx:198.51.100.0/24",)))
    assert err.value.code == "edge_public_unauthenticated" and "'pbx'" in str(err.value) and "forged" in str(err.value)
