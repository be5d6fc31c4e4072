"""An image whose default command is a shell (busybox, alpine, nicolaka/netshoot, curlimages/curl …) or the
pause container: without a terminal the shell would exit at once, so the lab's stand-in just waits for
SIGTERM and exits 0. Arguments are ignored."""

from __future__ import annotations

from membrane.lab.workloads import runtime


def main() -> None:
    runtime.run_until_terminated([])


if __name__ == "__main__":
    main()
