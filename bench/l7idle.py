"""Hold N idle TCP connections: ``python bench/l7idle.py IP PORT N SECONDS`` prints how many opened."""

from __future__ import annotations

import socket
import sys
import time


def main() -> None:
    ip, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    held = []
    for _ in range(n):
        try:
            held.append(socket.create_connection((ip, port), 5))
        except OSError:
            break
    print(len(held), flush=True)
    time.sleep(seconds)
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
