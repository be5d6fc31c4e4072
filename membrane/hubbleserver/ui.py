"""``membrane hubble ui``: a small Hubble UI on loopback, fed by the relay over its Observer API.

Serves the static page (``ui_static/``: HTML, CSS and JS we wrote, nothing from a CDN) and three JSON
endpoints the page polls:

* ``/api/namespaces``: the relay's GetNamespaces;
* ``/api/map?namespace=NS``: the service map (:mod:`membrane.hubble.servicemap`) of the relay's last
  flows, nodes and edges coloured by verdict;
* ``/api/flows?namespace=NS&verdict=V&limit=N``: the newest flows as table rows, optionally filtered.

It binds 127.0.0.1 only: the page shows the cluster's traffic to whoever reaches it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import grpc

from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc
from membrane.hubble.servicemap import ServiceMap, flow_row

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("ui_static")
DEFAULT_PORT = 12000  # where `cilium hubble ui` forwards Hubble UI
MAP_FLOWS = 4000
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
VERDICTS = {"FORWARDED", "DROPPED", "AUDIT", "ERROR", "REDIRECTED", "TRACED", "TRANSLATED"}


class RelayClient:
    """The relay's Observer API, for the UI's reads."""

    def __init__(self, target: str, timeout: float = 10.0) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = observer_pb2_grpc.ObserverStub(self._channel)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def namespaces(self) -> list[str]:
        resp = self._stub.GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=self._timeout)
        return sorted({ns.namespace for ns in resp.namespaces})

    def flows(self, number: int, namespace: str = "", verdict: str = "") -> list[flow_pb2.Flow]:
        request = observer_pb2.GetFlowsRequest(number=number)
        if namespace:
            request.whitelist.add(source_pod=[f"{namespace}/"])
            request.whitelist.add(destination_pod=[f"{namespace}/"])
        if verdict:
            for flt in request.whitelist or [request.whitelist.add()]:
                flt.verdict.append(flow_pb2.Verdict.Value(verdict))
        return [r.flow for r in self._stub.GetFlows(request, timeout=self._timeout) if r.HasField("flow")]


def _query(path: str) -> tuple[str, dict[str, str]]:
    url = urlparse(path)
    return url.path, {k: v[-1] for k, v in parse_qs(url.query).items()}


def api(client: RelayClient, route: str, params: dict[str, str]) -> tuple[int, Any]:
    """(HTTP status, JSON body) of one API call."""
    namespace = params.get("namespace", "")
    if route == "/api/namespaces":
        return 200, {"namespaces": client.namespaces()}
    if route == "/api/map":
        smap = ServiceMap(namespace)
        for flow in client.flows(MAP_FLOWS, namespace):
            smap.add(flow)
        return 200, smap.to_dict()
    if route == "/api/flows":
        verdict = params.get("verdict", "").upper()
        if verdict and verdict not in VERDICTS:
            return 400, {"error": f"verdict: {verdict!r} is not one of {', '.join(sorted(VERDICTS))}"}
        try:
            limit = max(1, min(int(params.get("limit", "100")), 2000))
        except ValueError:
            return 400, {"error": f"limit: {params['limit']!r} is not a number"}
        flows = client.flows(limit, namespace, verdict)
        return 200, {"flows": [flow_row(f) for f in reversed(flows)]}
    return 404, {"error": f"no such API: {route}"}


def _handler(client: RelayClient) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("ui: " + fmt, *args)

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            route, params = _query(self.path)
            if route.startswith("/api/"):
                try:
                    status, body = api(client, route, params)
                except grpc.RpcError as exc:
                    status, body = 502, {"error": f"relay: {exc.code().name}: {exc.details()}"}
                self._send(status, json.dumps(body).encode(), "application/json")
                return
            name = "index.html" if route in ("/", "") else route.lstrip("/")
            file = STATIC / name
            if "/" in name or not file.is_file():
                self._send(404, b"not found\n", "text/plain")
                return
            self._send(200, file.read_bytes(), _TYPES.get(file.suffix, "application/octet-stream"))

    return Handler


class UIServer:
    """The UI on ``127.0.0.1:port`` (0: any free port, see ``port``), reading from ``relay_target``."""

    def __init__(self, relay_target: str, port: int = DEFAULT_PORT,
                 client_factory: Callable[[str], RelayClient] = RelayClient) -> None:
        self.client = client_factory(relay_target)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self.client))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hubble-ui", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.client.close()
