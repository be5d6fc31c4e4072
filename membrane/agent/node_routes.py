"""Apply the node routes computed by membrane.endpoint.routing to this node's routing table.

Only routes we own (our rtnetlink protocol) with a gateway are node routes; per-endpoint routes have
none and are managed by the endpoint code, so pruning never touches them.
"""

from __future__ import annotations

from membrane.datapath.linux import routes
from membrane.endpoint.routing import RouteSpec


def sync_node_routes(desired: dict[str, RouteSpec]) -> None:
    current = {r.dst: r for r in routes.list_routes() if r.gateway}
    for dst, spec in desired.items():
        have = current.get(dst)
        if have is None or have.gateway != spec.gateway or have.dev != spec.dev:
            routes.replace_route(spec.dst, gateway=spec.gateway, dev=spec.dev)
    for dst, have in current.items():
        if dst not in desired:
            routes.delete_route(dst, gateway=have.gateway, dev=have.dev)
