"""The offer/answer side of one SIP endpoint: our media address and codecs, and whom we send media to.

``telephony.sdp`` reads and writes SDP; this adds the endpoint's own facts (``media_host``, the codecs we
take) and the ``media_address_policy`` of issue #15: an inbound peer's c= must be its signalling source's
IP or inside ``trusted_media_networks``, else the offer is refused ("refuse") or the media goes to the
source ("source"). Media is never aimed at a third party named by an unauthenticated caller.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace

from aiosipua import SdpMessage

from assistant.errors import TelephonyError
from assistant.settings import TelephonySettings
from telephony.sdp import MediaPlan, answer_for, build_offer, read_media

logger = logging.getLogger(__name__)


class OfferAnswer:
    def __init__(self, *, settings: TelephonySettings, media_host: str) -> None:
        self.settings = settings
        self.media_host = media_host
        self.codecs = tuple(settings.codecs)

    def offer(self, *, port: int, codecs: tuple[str, ...] | None = None, direction: str = "sendrecv",
              dtmf_payload_type: int | None = 101) -> SdpMessage:
        return build_offer(ip=self.media_host, port=port, codecs=codecs or self.codecs, direction=direction,
                           dtmf_payload_type=dtmf_payload_type)

    def answer(self, plan: MediaPlan, *, port: int, offer: SdpMessage | None) -> SdpMessage:
        """Our answer to ``offer`` (``plan`` was read from it): its m= lines mirrored, RFC 3264 §6."""
        return answer_for(plan, ip=self.media_host, port=port, offer=offer)

    def read_offer(self, sdp: SdpMessage | None, *, source_ip: str | None,
                   codecs: tuple[str, ...] | None = None) -> MediaPlan:
        """A peer's offer (or its answer to ours) as a plan, its address vetted; ``TelephonyError`` if unusable."""
        return self.vet(read_media(sdp, codecs=codecs or self.codecs), source_ip)

    def read_answer(self, sdp: SdpMessage | None, *, codecs: tuple[str, ...] | None = None) -> MediaPlan:
        """The answer of a peer we called (we chose whom to call: only IP-literal-checked)."""
        return read_media(sdp, codecs=codecs or self.codecs)

    def vet(self, plan: MediaPlan, source_ip: str | None) -> MediaPlan:
        """An inbound peer's media address against ``media_address_policy``: the signalling source's IP, a
        trusted network, 0.0.0.0 (hold) pass; else ``sdp_foreign_address`` ("refuse") or the source's IP in
        its place ("source")."""
        ip = plan.remote_addr[0]
        if source_ip is None or ip in ("0.0.0.0", source_ip) or _in_networks(ip, self.settings.trusted_media_networks):
            return plan
        if self.settings.media_address_policy == "source":
            logger.info("SDP c=%s is not the signalling source %s: sending media to the source", ip, source_ip)
            return replace(plan, remote_addr=(source_ip, plan.remote_addr[1]))
        raise TelephonyError(f"the SDP's c= address {ip} is not the signalling source {source_ip}", code="sdp_foreign_address")


def _in_networks(ip: str, networks: tuple[str, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for net in networks:
        try:
            if addr in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            logger.warning("telephony.trusted_media_networks: %r is not a network", net)
    return False
