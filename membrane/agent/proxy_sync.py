"""The agent's proxy manager: proxy ports for redirects, listeners, TPROXY rules and L7 flows.

Policy resolution says, per endpoint, which (direction, protocol, port) are redirected and with
which L7 rules (``ResolvedPolicy.l7``). Before the policy controller writes map slots carrying a
proxy port, it asks :meth:`ProxyManager.ports_for`: that allocates the port (10000-20000, one per
endpoint redirect, kept while the redirect lives), starts its transparent listener and installs its
TPROXY rule — so a slot never names a port nothing listens on. :meth:`retain` releases what no
endpoint uses any more (after the slots are gone). Every accepted connection is described from
this state (endpoint, rules, identities from the BPF ipcache) and handed to the handler of its kind
(:mod:`membrane.proxy.registry`); its L7 records become Hubble flows lazily, off the request path
(:mod:`membrane.hubble.l7lazy`: raw records in the ring, HTTP metrics counted by key).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from membrane.datapath.linux import tproxy
from membrane.hubble.l7flow import Lookup
from membrane.hubble.l7lazy import L7Flows, Sink
from membrane.hubble.lazyflow import LazyFlow
from membrane.model.secret import secret_value
from membrane.policy.l7 import PROTO_UDP, Redirect, redirects, rules_for
from membrane.policy.mapstate import ResolvedPolicy
from membrane.proxy.http import handle_http
from membrane.proxy.kafka import handle_kafka
from membrane.proxy.ports import PortAllocator
from membrane.proxy.registry import L7Context, Registry
from membrane.proxy.server import PORT_RANGE, ProxyServer, upstream_opener
from membrane.proxy.tls_sni import KIND as TLS_KIND
from membrane.proxy.tls_sni import handle_tls_sni

log = logging.getLogger(__name__)

RedirectKey = tuple[str, int, int]  # (direction, protocol, port)


def default_registry() -> Registry:
    reg = Registry()
    reg.register("http", handle_http)
    reg.register("kafka", handle_kafka)
    reg.register(TLS_KIND, handle_tls_sni)  # serverNames (l7sni)
    return reg


class ProxyManager:
    def __init__(self, node: str, identity_of: Callable[[str], int], lookup: Lookup,
                 sink: Sink, registry: Registry | None = None, *,
                 secret_value: Callable[[str, str], str | None] | None = None) -> None:
        self.node = node
        self.identity_of = identity_of
        self.lookup = lookup
        self.flows = L7Flows(node, lookup, sink)  # each connection's emit; records into the ring and the metrics
        self.secret_value = secret_value  # (namespace, name) -> a Secret's one value (headerMatches secrets)
        self.registry = registry or default_registry()
        self.ports = PortAllocator(*PORT_RANGE)
        self.server = ProxyServer(self.registry, self.describe)
        self._lock = threading.Lock()
        self._by_port: dict[int, tuple[int, Redirect]] = {}  # proxy port -> (endpoint id, redirect)
        self._policy: dict[int, ResolvedPolicy] = {}  # endpoint id -> its resolved policy
        self._installed: set[int] = set()
        # UDP redirects (DNS) are served by listeners of their own (membrane.proxy.dns.UDPListener): the
        # factory makes one for a proxy port; a kind is only redirected over UDP when it is set
        self.udp_factory: Callable[[int], Any] | None = None
        self._udp: dict[int, Any] = {}
        self.ip = ""
        self.problem = ""

    def start(self, ip: str = "") -> None:
        self.ip = ip
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        for listener in self._udp.values():
            listener.close()
        try:
            tproxy.remove()
        except Exception as exc:  # best effort at shutdown
            log.debug("tproxy cleanup: %s", exc)

    # ---- policy side --------------------------------------------------------------------------
    def ports_for(self, ep_id: int, resolved: ResolvedPolicy) -> Mapping[RedirectKey, int]:
        """The proxy port of each redirect of the endpoint, listening and routed before returning."""
        wanted = sorted(redirects(resolved.l7))
        out: dict[RedirectKey, int] = {}
        with self._lock:
            self._policy[ep_id] = resolved
            for r in wanted:
                if self.registry.get(r.kind) is None or (r.protocol == PROTO_UDP and self.udp_factory is None):
                    continue  # no proxy for this kind yet: the port stays a plain L4 allow
                port = self.ports.get((ep_id, r.direction, r.protocol, r.port))
                self._by_port[port] = (ep_id, r)
                out[(r.direction, r.protocol, r.port)] = port
            self._install()
        return out

    def retain(self, endpoints: Iterable[int]) -> None:
        """Release the ports of endpoints and redirects that are gone."""
        with self._lock:
            live = set(endpoints)
            self._policy = {i: p for i, p in self._policy.items() if i in live}
            keys = [(i, r.direction, r.protocol, r.port) for i, p in self._policy.items()
                    for r in redirects(p.l7) if self.registry.get(r.kind) is not None]
            for port in self.ports.retain(keys):
                self._by_port.pop(port, None)
            self._install()

    def _install(self) -> None:
        ports = set(self._by_port)
        for port in ports - self._installed:
            if self._by_port[port][1].protocol == PROTO_UDP and self.udp_factory is not None:
                self._udp[port] = self.udp_factory(port)
            else:
                self.server.listen(port)
        if ports != self._installed:
            if ports:
                tproxy.ensure_routing()
            tproxy.set_ports(ports)
        for port in self._installed - ports:
            if port in self._udp:
                self._udp.pop(port).close()
            else:
                self.server.close(port)
        self._installed = ports

    # ---- proxy side ---------------------------------------------------------------------------
    def describe(self, port: int, client: tuple[str, int], original: tuple[str, int]) -> L7Context | None:
        with self._lock:
            found = self._by_port.get(port)
            if found is None:
                return None
            ep_id, redirect = found
            resolved = self._policy.get(ep_id)
        if resolved is None:
            return None
        src_id, dst_id = self.identity_of(client[0]), self.identity_of(original[0])
        peer = src_id if redirect.direction == "ingress" else dst_id
        return L7Context(redirect=redirect, endpoint_id=ep_id, client=client, original_dst=original,
                         src_identity=src_id, dst_identity=dst_id, rules=rules_for(resolved.l7, redirect, peer),
                         open_upstream=upstream_opener(client, original, port, redirect.direction),
                         emit=self.flows.connection(), extra={"secret_value": self.secret_value} if self.secret_value else {})

    def status(self) -> dict[str, Any]:
        with self._lock:
            rows = [{"proxy": r.kind, "name": f"{ep}:{r.direction}:{r.port}", "proxy-port": port}
                    for port, (ep, r) in sorted(self._by_port.items())]
        return {"ip": self.ip, "port-range": f"{PORT_RANGE[0]}-{PORT_RANGE[1]}", "total-redirects": len(rows),
                "envoy-deployment-mode": "none (membrane proxies)", "redirects": rows,
                "connections": self.server.connections, "errors": self.server.errors,
                "event-loop": self.server.loop_kind}


def secret_lookup(secrets: Any) -> Callable[[str, str], str | None]:
    """(namespace, name) -> the value of the Secret with one entry, from the agent's Secret mirror."""

    def value(namespace: str, name: str) -> str | None:
        kv = secrets.get(f"{secrets.prefix}{namespace or 'default'}/{name}")
        return secret_value(json.loads(kv.value)) if kv is not None else None

    return value


def hubble_sink(observability: Callable[[], Any]) -> tuple[Lookup, Sink]:
    """(endpoint lookup, L7 flow sink) over the agent's observability, once it runs (flows before are
    dropped). The sink puts the lazy flow in the ring and counts it: by key when it has one, built
    otherwise."""

    def lookup(ip: str) -> Any:
        obs = observability()
        return obs.index.lookup(ip) if obs is not None else None

    def sink(entry: LazyFlow, key: Hashable | None, seconds: float) -> None:
        obs = observability()
        if obs is None:
            return
        obs.ring.append(entry)
        try:
            if key is None:
                obs.hubble_metrics.process(entry.flow())
            else:
                obs.hubble_metrics.process_l7_keyed(key, entry.flow, seconds)
        except Exception as exc:
            log.warning("L7 flow not counted: %s", exc)

    return lookup, sink
