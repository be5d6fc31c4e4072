"""Built-in workload images of the lab: stdlib-only servers that stand in for container images.

The lab runs each container as a host process inside the pod's network namespace. ``images.resolve`` maps a
pod's image, command and args to the argv to exec; the modules here (whoami, nginx, agnhost, jsonmock,
starwars, idle) are that argv's programs, each runnable as ``python -m membrane.lab.workloads.<name>``.
They import little so that hundreds can start quickly, listen on 0.0.0.0 (``MEMBRANE_LISTEN_ADDRESS``
overrides, e.g. 127.0.0.1 in tests) and exit promptly on SIGTERM.
"""
