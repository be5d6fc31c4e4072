"""cilium/starwars: the Death Star API of Cilium's getting-started demo (``deathstar`` service, port 80).

``GET /v1`` describes the station, ``POST /v1/request-landing`` answers ``Ship landed``, ``PUT
/v1/exhaust-port`` makes it explode (the demo's reason for an L7 policy), ``GET /v1/healthz`` is 200.
``--port`` overrides 80.
"""

from __future__ import annotations

import json
import sys

from membrane.lab.workloads import httpcore, runtime
from membrane.lab.workloads.httpcore import Request, Response, text

API = ["GET   /v1", "GET   /v1/healthz", "POST  /v1/request-landing", "PUT   /v1/cargobay",
       "GET   /v1/hyper-matter-reactor/status", "PUT   /v1/exhaust-port"]
PANIC = """Panic: deathstar exploded

goroutine 1 [running]:
main.HandleGarbage(0x2080c3f50, 0x2, 0x4, 0x425c0, 0x5, 0xa)
        /code/src/github.com/empire/deathstar/
        temp.go:9 +0x64
main.main()
        /code/src/github.com/empire/deathstar/
        temp.go:5 +0x85
"""


def handle(req: Request) -> Response:
    route = (req.method, req.path.rstrip("/") or "/")
    if route in (("GET", "/v1"), ("HEAD", "/v1")):
        info = {
            "name": "Death Star",
            "hostname": runtime.hostname(),
            "model": "DS-1 Orbital Battle Station",
            "manufacturer": "Imperial Department of Military Research, Sienar Fleet Systems",
            "cost_in_credits": "1000000000000",
            "length": "120000",
            "crew": "342953",
            "passengers": "843342",
            "cargo_capacity": "1000000000000",
            "hyperdrive_rating": "4.0",
            "starship_class": "Deep Space Mobile Battlestation",
            "api": API,
        }
        return text(json.dumps(info, indent=2) + "\n", content_type="application/json")
    if route in (("GET", "/v1/healthz"), ("HEAD", "/v1/healthz")):
        return text("OK\n")
    if route == ("POST", "/v1/request-landing"):
        return text("Ship landed\n")
    if route == ("PUT", "/v1/cargobay"):
        return text("Cargo loaded\n")
    if route == ("GET", "/v1/hyper-matter-reactor/status"):
        return text("Hyper-matter reactor: online\n")
    if route == ("PUT", "/v1/exhaust-port"):
        return text(PANIC, 503)
    return text("404 page not found\n", 404)


def main(argv: list[str]) -> None:
    port = 80
    if argv[:1] == ["--port"] and len(argv) > 1 and argv[1].isdigit():
        port = int(argv[1])
    elif argv and argv[0].startswith("--port=") and argv[0][7:].isdigit():
        port = int(argv[0][7:])
    try:
        listener = httpcore.open_tcp_listener(port)
    except OSError as exc:
        runtime.fatal(f"deathstar: listen :{port}: {exc.strerror}")
    runtime.log(f"Death Star online on port {port}")
    runtime.run_until_terminated([lambda: httpcore.serve(listener, handle)])


if __name__ == "__main__":
    main(sys.argv[1:])
