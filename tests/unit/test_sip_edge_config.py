"""The SIP edge's settings and kamailio configuration (telephony.edge); the calls through it are in
tests/e2e/test_sip_edge.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.errors import SetupError
from assistant.settings import EdgeSettings
from telephony.edge import EdgeTrunk, TlsFiles, kamailio_config, parse_trunk, tls_files, trunks_of


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
