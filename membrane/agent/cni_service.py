"""Server side of the CNI wire protocol: ``POST /v1/cni/{add,del,check,status,gc}``.

Requests carry ``containerID``, ``netns``, ``ifname``, ``args`` (parsed CNI_ARGS) and ``netconf``;
failures are CNI error objects (``code``, ``msg``, ``details``) with the spec's codes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from membrane.agent.api import APIFailure
from membrane.agent.node_network import NodeNetwork
from membrane.api.cni_result import build_add_result
from membrane.ipam.host_scope import RangeFull

log = logging.getLogger(__name__)

ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_TRY_AGAIN = 11
ERR_NOT_AVAILABLE = 50
ERR_IPAM = 100  # plugin-specific range starts at 100
REGENERATION_TIMEOUT = 30.0  # seconds an ADD waits for the endpoint's identity and policy


def _fail(status: int, code: int, msg: str, details: str = "") -> APIFailure:
    return APIFailure(status, {"code": code, "msg": msg, "details": details})


class CNIService:
    def __init__(self, net: NodeNetwork, labels_for: Callable[[str, str], dict[str, str]], ready: Callable[[], str]) -> None:
        self.net = net
        self._labels_for = labels_for
        self._ready = ready  # returns "" when ready, else the reason
        self.regeneration_timeout = REGENERATION_TIMEOUT

    def _request(self, body: Any, need_netns: bool = True) -> tuple[str, str, str, dict[str, str], dict[str, Any]]:
        if not isinstance(body, dict):
            raise _fail(400, 6, "decoding request failed", "expected a JSON object")
        cid = str(body.get("containerID") or "")
        ifname = str(body.get("ifname") or "")
        netns = str(body.get("netns") or "")
        if not cid or not ifname or (need_netns and not netns):
            raise _fail(400, ERR_INVALID_ENV, "containerID, ifname and netns are required")
        args = body.get("args") or {}
        netconf = body.get("netconf") or {}
        return cid, ifname, netns, args, netconf

    def add(self, body: Any) -> dict[str, Any]:
        cid, ifname, netns, args, netconf = self._request(body)
        reason = self._ready()
        if reason:
            raise _fail(503, ERR_TRY_AGAIN, "agent not ready", reason)
        if not os.path.exists(netns):
            raise _fail(400, ERR_UNKNOWN_CONTAINER, f"network namespace {netns} does not exist")
        namespace = args.get("K8S_POD_NAMESPACE", "default")
        pod = args.get("K8S_POD_NAME", cid[:12])
        with self.net.stats.stage("total"):
            try:
                ep = self.net.add_endpoint(cid, ifname, netns, namespace, pod, self._labels_for(namespace, pod))
            except RangeFull as exc:
                raise _fail(500, ERR_IPAM, str(exc), f"pod {namespace}/{pod} on pod CIDR {self.net.pod_cidr}") from None
            except OSError as exc:
                raise _fail(500, ERR_IO, f"setting up the pod network failed: {exc}", f"pod {namespace}/{pod}") from None
            # Like Cilium's CNI ADD, answer once the endpoint has its identity and its policy is in the
            # map: the container starts after this, so its first packet already meets its policy.
            with self.net.stats.stage("waitingForPolicy"):
                regenerated = self.net.wait_regenerated(cid, ifname, self.regeneration_timeout)
            if not regenerated:
                self.net.remove_endpoint(cid, ifname)  # nothing stays behind; the runtime retries
                raise _fail(503, ERR_TRY_AGAIN, "timeout waiting for the endpoint's identity and policy",
                            f"pod {namespace}/{pod}: not regenerated within {self.regeneration_timeout:.0f} s "
                            "(is the kvstore reachable?)")
        log.info("endpoint %d %s/%s %s on %s", ep.id, namespace, pod, ep.ipv4, ep.host_ifname)
        result = build_add_result(
            netconf.get("cniVersion", "1.0.0"), ifname, ep.host_ifname, ep.host_mac, ep.pod_mac, netns,
            ep.ipv4, 32, self.net.router_ip,
        )
        return {"result": result}

    def delete(self, body: Any) -> dict[str, Any]:
        cid, ifname, _netns, _args, _conf = self._request(body, need_netns=False)
        ep = self.net.remove_endpoint(cid, ifname)
        if ep is not None:
            log.info("endpoint %d %s removed, %s released", ep.id, ep.pod_key, ep.ipv4)
        return {}

    def check(self, body: Any) -> dict[str, Any]:
        cid, ifname, _netns, _args, _conf = self._request(body)
        problems = self.net.check_endpoint(cid, ifname)
        if problems:
            raise _fail(500, ERR_IO, "; ".join(problems))
        return {}

    def status(self, body: Any) -> dict[str, Any]:
        reason = self._ready()
        if reason:
            raise _fail(503, ERR_NOT_AVAILABLE, "plugin not available", reason)
        return {}

    def gc(self, body: Any) -> dict[str, Any]:
        netconf = (body or {}).get("netconf") or {}
        valid = {(a.get("containerID"), a.get("ifname")) for a in netconf.get("cni.dev/valid-attachments", [])}
        removed = []
        for ep in self.net.endpoints.list():
            if (ep.container_id, ep.ifname) not in valid:
                self.net.remove_endpoint(ep.container_id, ep.ifname)
                removed.append(ep.pod_key)
        if removed:
            log.info("CNI GC removed endpoints of %s", ", ".join(removed))
        return {}
