"""Sends alarm events to a DC-09 receiver with dc09-spt 0.0.4, as a panel
built on it would: its public API (`dc09_spt.send_msg`) numbers the messages
(in hex), builds the SIA-DCS and ADM-CID blocks and their extended data, and
sends each until the receiver ACKs it.

usage: python dc09_spt_sender.py HOST PORT ACCOUNT COUNT [KEY]

With KEY (32 or 64 hex digits) every block goes encrypted (`*SIA-DCS`), with
AES-128 or AES-256 as dc09-spt offers.

Prints `acknowledged N` for each message the receiver ACKed, then
`acknowledged poll` for a link test, and exits 0 when all were; exits 1 at
the first one still unsent after 10 s (dc09-spt itself would retry it
forever).
"""

import os
import sys
import threading
import time

from Crypto.Cipher import AES
from dc09_spt import dc09_spt

# dc09-spt retries an unacknowledged message forever, every half second.
DEADLINE_SECONDS = 10

# Alternating SIA-DCS (with an alarm text) and ADM-CID (new event, then a
# restore), with extended-data blocks (longitude, latitude, MAC,
# verification) on every third message.
EXTENDED = {
    "lon": "52.21",
    "lat": "5.9699",
    "mac": "0011AABBCCDD",
    "verification": "http://192.0.2.7/cam1",
}


def extended_blocks(params={}):
    """What dc09-spt 0.0.4's `dc09_msg.dc09_extra` builds but, for want of a
    `return`, never hands back: without this its extended data never leaves."""
    letters = (("lon", "X"), ("lat", "Y"), ("mac", "M"), ("verification", "V"))
    blocks = "".join(f"[{letter}{params[key]}]" for key, letter in letters if key in params)
    return blocks or None


dc09_spt.dc09_msg.dc09_extra = staticmethod(extended_blocks)


def as_bytes(value):
    return value.encode("latin-1") if isinstance(value, str) else value


class StrTolerantCipher:
    """dc09-spt was written for pycrypto, which took str where pycryptodome
    takes bytes (the IV, the padded plaintext)."""

    def __init__(self, cipher):
        self.cipher = cipher

    def encrypt(self, data):
        return self.cipher.encrypt(as_bytes(data))

    def decrypt(self, data):
        return self.cipher.decrypt(as_bytes(data))


pycryptodome_new = AES.new
AES.new = lambda key, mode, iv: StrTolerantCipher(
    pycryptodome_new(as_bytes(key), mode, as_bytes(iv))
)


def give_up(what):
    print(f"not acknowledged {what}", flush=True)
    # dc09-spt's threads would retry forever; leave without them.
    os._exit(1)


def thread_failed(args):
    """dc09-spt reads replies in its sending thread; a reply it cannot read
    raises there and drops the message, which must not pass for an ACK."""
    print(f"dc09-spt raised {args.exc_value!r}", file=sys.stderr, flush=True)
    give_up("(a reply dc09-spt could not read)")


threading.excepthook = thread_failed


def message(index):
    if index % 2 == 0:
        kind, params = "SIA-DCS", {"code": "BA", "zone": "01", "text": "Back door"}
    else:
        qualifier = "1" if index % 4 == 1 else "3"
        kind, params = "ADM-CID", {"code": "130", "q": qualifier, "zone": "3"}
    if index % 3 == 2:
        params.update(EXTENDED)
    return kind, params


def main():
    host, port, account, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    key = bytes.fromhex(sys.argv[5]) if len(sys.argv) > 5 else None
    panel = dc09_spt.dc09_spt(account, receiver=1, line=2)
    panel.set_path("main", "primary", host, port, key=key, type="tcp")
    for index in range(count):
        kind, params = message(index)
        panel.send_msg(kind, params)
        # One message at a time: the sending thread ends once the queue is empty.
        panel.send.join(DEADLINE_SECONDS)
        if panel.send.is_alive() or panel.notSent():
            give_up(index + 1)
        print(f"acknowledged {index + 1}", flush=True)
    # Then a link test: dc09-spt polls with NULL, sequence 0000, at once.
    panel.start_poll(3600, retry_delay=0.05)
    deadline = time.monotonic() + DEADLINE_SECONDS
    # Its poll thread reports nothing but a count: look at it now and then.
    while panel.poll.count() == 0:
        if time.monotonic() > deadline:
            give_up("poll")
        time.sleep(0.05)
    panel.stop_poll()
    print("acknowledged poll", flush=True)


if __name__ == "__main__":
    main()
