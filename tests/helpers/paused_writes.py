"""``python tests/helpers/paused_writes.py fit ...``: the lightq CLI with a pause inside every atomic write.

Each write (replay sidecar, sidecar index, ``.ckpt``) writes its temp file, then creates the marker
``$LIGHTQ_PAUSE_DIR/<count>-<file name>`` and sleeps ``$LIGHTQ_PAUSE_S`` seconds before the fsync and the
rename. A test that sees the marker knows the process is in the middle of that write and SIGKILLs it.
"""

import itertools
import os
import sys
import time
from pathlib import Path

import lightq.callbacks.checkpoint as checkpoint
from lightq.cli import main

_original = checkpoint._atomic_write
_count = itertools.count()


def _paused_atomic_write(path, write):
    def paused(f):
        write(f)
        f.flush()
        marker = Path(os.environ["LIGHTQ_PAUSE_DIR"]) / f"{next(_count):05d}-{Path(path).name}"
        marker.touch()
        time.sleep(float(os.environ.get("LIGHTQ_PAUSE_S", "0.5")))

    _original(path, paused)


checkpoint._atomic_write = _paused_atomic_write

if __name__ == "__main__":
    main(sys.argv[1:])
