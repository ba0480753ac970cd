"""The order forms, one module per order type: its slots, how they are parsed and validated, the read-back,
and what goes into the order (``gas``, ``meal``, ``repair``, ``appointment``); ``base`` holds what they share.

A form fills its slots through ``extract``/``validate_<slot>`` in its ``FormValidationAction``; slot values
are parsed from the text by ``actions/parsing.py``. The last required slot ``<form>_confirmed`` is asked by
reading the order back; "no" asks what to fix (``order_fix``), "cancel" ends without an order. The order is
confirmed to the elder only after ``POST /api/orders`` answered 201; otherwise the elder hears an apology and
is handed to an operator. Personal data (the address) is read back only when the call is verified.
"""
