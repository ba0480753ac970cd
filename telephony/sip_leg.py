"""One call's SIP signalling as the dialog state machine (``telephony.dialog``) sees it: send a final response,
a BYE, a CANCEL or a re-INVITE. Thin adapters over aiosipua's ``IncomingCall`` / ``OutgoingCall`` (and its UAC
for requests inside the dialog), built by ``telephony.sip.SipEndpoint``; the dialog never touches the UAC,
the UAS or the socket.
"""

from __future__ import annotations

from aiosipua import IncomingCall, OutgoingCall, SdpMessage, SipUAC

from assistant.errors import TelephonyError


class InboundLeg:
    """The server side of an INVITE (the first one or a re-INVITE) on a dialog we answer."""

    def __init__(self, *, incoming: IncomingCall, uac: SipUAC) -> None:
        self._inc = incoming
        self._uac = uac

    @property
    def source_addr(self) -> tuple[str, int]:
        return self._inc.source_addr

    @property
    def caller(self) -> str:
        return self._inc.caller

    @property
    def callee(self) -> str:
        """The number dialled: the INVITE's request URI (a screened line's number, telephony.screening)."""
        inc = getattr(self, "_inc", None)  # (test doubles of a leg may not wrap an IncomingCall)
        uri = getattr(getattr(inc, "invite", None), "uri", None)
        return str(uri) if uri else str(getattr(inc, "callee", "") or "")

    def ringing(self) -> None:
        self._inc.ringing()

    def accept(self, sdp: SdpMessage) -> None:
        """200 OK with ``sdp`` (an answer, or our offer for an INVITE without one)."""
        self._inc.accept(sdp)

    def refuse(self, status: int, reason: str = "", *, headers: dict[str, str] | None = None,
               terminate: bool = True) -> None:
        """A final non-2xx; ``terminate=False`` for a re-INVITE (the dialog stays, RFC 3261 §14.2)."""
        if headers or not terminate:
            self._inc._send_response(status, reason or _REASONS.get(status, "Error"), extra_headers=headers)
            if terminate:
                self._inc.dialog.terminate()
        else:
            self._inc.reject(status, reason)

    def hangup(self) -> None:
        self._inc.hangup()

    def cancel(self) -> None:  # an inbound dialog is never ours to CANCEL
        raise TelephonyError("an inbound call cannot be cancelled", code="not_outbound")

    def reinvite(self, sdp: SdpMessage) -> None:
        """Our re-INVITE on the caller's dialog: aiosipua's UAC sends it and ACKs the 200, and it looks the
        call up by Call-ID among its own (outbound) calls, so it is shown this dialog as one of them."""
        shim = OutgoingCall(dialog=self._inc.dialog, invite=self._inc.invite, transport=self._inc.transport,
                            remote_addr=self._inc.source_addr)
        shim._answered.set()
        self._uac._calls.setdefault(self._inc.call_id, shim)
        self._uac.send_reinvite(self._inc.dialog, sdp, self._inc.source_addr)


class OutboundLeg:
    """The client side of an INVITE we sent (``SipEndpoint.dial``)."""

    def __init__(self, *, outgoing: OutgoingCall, uac: SipUAC) -> None:
        self._oc = outgoing
        self._uac = uac
        self.on_ringing = None  # Callable[[], None]: a 180/183 arrived

        def ringing(_oc) -> None:
            if self.on_ringing is not None:
                self.on_ringing()

        outgoing.on_ringing = ringing

    async def wait_answered(self, *, timeout_s: float) -> None:
        """Until the 200 OK; ``TimeoutError``, or ``RuntimeError`` for a final non-2xx (``refusal``)."""
        await self._oc.wait_answered(timeout=timeout_s)

    @property
    def refusal(self) -> tuple[int, str]:
        """The status and reason of the final non-2xx that refused the INVITE."""
        return self._oc._reject_code, self._oc._reject_reason

    @property
    def sdp_answer(self) -> SdpMessage | None:
        return self._oc.sdp_answer

    def hangup(self) -> None:
        self._oc.hangup(self._uac)

    def cancel(self) -> None:
        self._oc.cancel(self._uac)

    def reinvite(self, sdp: SdpMessage) -> None:
        self._uac.send_reinvite(self._oc.dialog, sdp, self._oc.remote_addr)


_REASONS = {400: "Bad Request", 415: "Unsupported Media Type", 420: "Bad Extension", 480: "Temporarily Unavailable",
            481: "Call/Transaction Does Not Exist", 486: "Busy Here", 488: "Not Acceptable Here",
            503: "Service Unavailable"}
