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
    a client certificate required (there is no source-IP allow-list; a UDP trunk can never be public)."""
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
