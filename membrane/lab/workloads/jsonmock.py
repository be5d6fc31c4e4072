"""quay.io/cilium/json-mock: json-server over a small database, used by Cilium's connectivity test.

Listens on $PORT (default 80; ``--port`` wins). ``GET /public`` and ``/private`` list their records,
``/public/1`` gets one, ``/db`` the whole database; ``POST /<collection>`` adds a record (201, in memory);
``/hostname`` and ``/client-ip`` answer JSON about the server and the caller; ``/auth-header-required…`` wants
``Authorization: Bearer 123456`` (401 without it; the bare path then answers 200 ``{}``); anything else is 404 ``{}``. ``GET /`` is a small HTML index.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from membrane.lab.workloads import httpcore, runtime
from membrane.lab.workloads.httpcore import Request, Response

INDEX = b"""<!DOCTYPE html>
<html><head><title>JSON Server</title></head>
<body><h1>JSON Server</h1><p>Resources: <a href="/public">/public</a> <a href="/private">/private</a>
<a href="/db">/db</a></p></body></html>
"""


class JsonMock:
    def __init__(self) -> None:
        self.db: dict[str, list[dict]] = {
            "private": [{"id": 1, "body": "secret information"}],
            "public": [{"id": 1, "body": "public information"}],
        }
        self.lock = threading.Lock()

    def handle(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path.startswith("/auth-header-required"):
            if req.header("Authorization") != "Bearer 123456":
                return httpcore.text('Invalid Authorization header, try setting it to "Bearer 123456"', 401,
                                     "text/html; charset=utf-8")
            path = path.removeprefix("/auth-header-required")
            if not path:  # the bare path, as cilium-cli's client-egress-l7-set-header POSTs it: authorized
                return _json({})
        if path.startswith("/client-ip"):
            return _json({"client-ip": f"::ffff:{req.client[0]}" if "." in req.client[0] else req.client[0]})
        if path.startswith("/hostname"):
            return _json({"hostname": runtime.hostname()})
        if path == "/" and req.method in ("GET", "HEAD"):
            return Response(200, INDEX, [("Content-Type", "text/html; charset=UTF-8")])
        parts = path.strip("/").split("/")
        with self.lock:
            if parts == ["db"] and req.method in ("GET", "HEAD"):
                return _json(self.db)
            records = self.db.get(parts[0])
            if records is None or len(parts) > 2:
                return _json({}, 404)
            if len(parts) == 1 and req.method in ("GET", "HEAD"):
                return _json(records)
            if len(parts) == 1 and req.method == "POST":
                return self._create(records, req)
            if len(parts) == 2 and req.method in ("GET", "HEAD"):
                found = next((r for r in records if str(r.get("id")) == parts[1]), None)
                return _json(found, 200) if found is not None else _json({}, 404)
        return _json({}, 404)

    def _create(self, records: list[dict], req: Request) -> Response:
        try:
            record = json.loads(req.body or b"{}")
        except ValueError:
            return _json({}, 400)
        if not isinstance(record, dict):
            return _json({}, 400)
        record.setdefault("id", max((r.get("id", 0) for r in records if isinstance(r.get("id"), int)), default=0) + 1)
        records.append(record)
        return _json(record, 201)


def _json(value: object, status: int = 200) -> Response:
    body = json.dumps(value, indent=2).encode()
    return Response(status, body, [("X-Powered-By", "Express"), ("Content-Type", "application/json; charset=utf-8")])


def main(argv: list[str]) -> None:
    port = int(os.environ.get("PORT") or 80)
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg.startswith("--port"):
            value = arg.partition("=")[2] if "=" in arg else (args.pop(0) if args else "")
            if not value.isdigit():
                print(f"json-mock: invalid --port {value!r}", file=sys.stderr)
                sys.exit(2)
            port = int(value)
    app = JsonMock()
    try:
        listener = httpcore.open_tcp_listener(port)
    except OSError as exc:
        runtime.fatal(f"json-mock: listen :{port}: {exc.strerror}")
    print(f"\n  \\{{^_^}}/ hi!\n\n  Resources\n  http://localhost:{port}/private\n  http://localhost:{port}/public\n",
          flush=True)
    runtime.run_until_terminated([lambda: httpcore.serve(listener, app.handle)])


if __name__ == "__main__":
    main(sys.argv[1:])
