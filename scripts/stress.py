#!/usr/bin/env python3
"""Run pytest while CPU hogs keep every core busy: `make test-stress`.

CI runs on a small machine that may be busy with other work; a test that passes on
an idle machine and fails beside a hog waits on time instead of on events. This
script starts one busy-looping process per core (at the same priority as the
tests), runs pytest with the arguments given (the e2e tier by default), stops the
hogs whatever happens, and exits with pytest's status.
"""

from __future__ import annotations

import os
import subprocess
import sys

HOG = "while True:\n    pass\n"


def main(argv: list[str]) -> int:
    hogs = [
        subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.DEVNULL)
        for _ in range(os.cpu_count() or 2)
    ]
    print(f"stress: {len(hogs)} CPU hogs running beside pytest {' '.join(argv)}", flush=True)
    try:
        return subprocess.call([sys.executable, "-m", "pytest", *argv])
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["tests/e2e", "-q"]))
