"""moto's S3 server with its data kept across a restart: `python moto_persistent.py PORT STATE_FILE`.

moto keeps buckets in memory only, so a stopped server loses them. This one loads STATE_FILE (a
pickle of moto's S3 backends) before it binds PORT, and on SIGTERM stops serving, then writes the
state back: a stop and a start on the same port behave as an S3 outage that loses nothing.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
from pathlib import Path


def load(state: Path) -> None:
    from moto.s3.models import s3_backends

    if not state.exists():
        return
    saved = pickle.loads(state.read_bytes())
    for account, regions in saved["backends"].items():
        for region, backend in regions.items():
            s3_backends[account][region] = backend
    s3_backends.bucket_accounts.update(saved["bucket_accounts"])


def dump(state: Path) -> None:
    from moto.s3.models import s3_backends

    backends = {a: dict(s3_backends[a].items()) for a in list(s3_backends.keys())}
    data = pickle.dumps({"backends": backends, "bucket_accounts": dict(s3_backends.bucket_accounts)})
    tmp = state.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, state)


def main(port: int, state: Path) -> None:
    from moto.server import ThreadedMotoServer

    load(state)
    server = ThreadedMotoServer("127.0.0.1", port, verbose=False)
    server.start()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    while not stopping:
        time.sleep(0.1)
    server.stop()  # no new requests; the ones in flight finish
    time.sleep(0.5)
    dump(state)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
