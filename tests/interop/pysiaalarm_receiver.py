"""A DC-09 receiver played by pysiaalarm 3.2.2 (the one Home Assistant uses),
for the `alarm_panel` example to send to.

usage: python pysiaalarm_receiver.py ACCOUNT [KEY]

With KEY the account takes encrypted frames only. pysiaalarm uses the key's
text as its bytes: KEY `0123456789ABCDEF` is the AES-128 key whose hex is
30313233343536373839414243444546.

Listens on 127.0.0.1, a free port, and prints `listening on 127.0.0.1:PORT`,
then one line per event it ACKed: `event sequence=0001 type=NULL
receiver=R0 line=L0 account=1234 code=RP`. Runs until it is killed.
"""

import asyncio
import sys

from pysiaalarm.aio import SIAAccount, SIAClient


async def report(event):
    print(
        f"event encrypted={event.encrypted} sequence={event.sequence} "
        f"type={event.message_type.value} "
        f"receiver={event.receiver} line={event.line} account={event.account} "
        f"code={event.code}",
        flush=True,
    )


async def main():
    account = sys.argv[1]
    key = sys.argv[2] if len(sys.argv) > 2 else None
    client = SIAClient("127.0.0.1", 0, [SIAAccount(account, key)], report)
    await client.async_start()
    port = client.server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
