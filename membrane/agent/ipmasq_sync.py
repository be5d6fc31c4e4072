"""ip-masq-agent: keep this node's mb_ipmasq_v4 equal to the non-masquerade prefixes in force.

The configuration comes from the ``kube-system/ip-masq-agent`` ConfigMap when one is in the store
(Cilium reads the same ConfigMap, mounted as a file), else from the Helm values
(``ipMasqAgent.config``); membrane.model.ipmasq adds the defaults. With ``ipMasqAgent.enabled=false``
the map is kept empty. A ConfigMap that does not parse (apply refuses those, so only a store written
by other means) keeps the last good prefixes and is reported in the status. The prefixes are a
desired table written to the map by a reconciler (ops in membrane.datapath.maps.prefix_ops).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from typing import Any

from membrane.datapath.loader import NodeDatapath
from membrane.datapath.maps.prefix_ops import IpMasqOps, prefix_text
from membrane.model.config import ClusterConfig
from membrane.model.errors import ValidationError
from membrane.model.ipmasq import CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, IpMasqConfig, config_of_configmap
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table
from membrane.store.mirror import Mirror

log = logging.getLogger(__name__)


def configmaps_prefix(store_prefix: str) -> str:
    """Where the ConfigMaps of kube-system live in the store (the mirror's prefix)."""
    return f"{store_prefix}/resources/core/ConfigMap/{CONFIGMAP_NAMESPACE}/"


class IpMasqSync:
    def __init__(self, configmaps: Mirror, config: Callable[[], ClusterConfig],
                 datapath: Callable[[], NodeDatapath | None]) -> None:
        self.configmaps = configmaps
        self._config = config
        self._datapath = datapath
        self.source = "helm values"
        self.error = ""
        self.table: Table[str, bool] = Table("ipmasq", initialized=False)
        self.reconciler: Reconciler[str, bool] = Reconciler(
            self.table, IpMasqOps(lambda: dp.ipmasq if (dp := self._datapath()) is not None else None),
            name="bpf-ipmasq", prune_interval=60.0)

    def wanted(self) -> IpMasqConfig | None:
        """The configuration in force; None when ip-masq-agent is off. Raises ValidationError for a
        ConfigMap that does not parse."""
        cfg = self._config()
        if not cfg.ip_masq_agent_enabled:
            return None
        kv = self.configmaps.get(self.configmaps.prefix + CONFIGMAP_NAME)
        if kv is None:
            self.source = "helm values"
            return cfg.ip_masq_config()
        self.source = f"configmap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}"
        try:
            return config_of_configmap(json.loads(kv.value))
        except ValidationError as exc:
            raise ValidationError(f"{self.source}: {exc}") from None

    def sync(self) -> None:
        dp = self._datapath()
        if dp is None:
            return
        try:
            wanted = self.wanted()
        except ValidationError as exc:
            if str(exc) != self.error:
                log.error("ip-masq-agent: %s; keeping the prefixes in force", exc)
            self.error = str(exc)
            return
        self.error = ""
        rows = {prefix_text(p): True for p in (wanted.prefixes() if wanted is not None else [])}
        if rows.keys() != self.table.keys():
            log.info("ip-masq-agent: %d prefixes (%s)", len(rows), self.source)
        self.table.replace_all(rows)
        self.table.mark_initialized()
        self.reconciler.run_once()

    def prefixes(self) -> list[ipaddress.IPv4Network]:
        dp = self._datapath()
        return dp.ipmasq.prefixes() if dp is not None else []

    def status(self) -> dict[str, Any]:
        return {"enabled": self._config().ip_masq_agent_enabled, "source": self.source, "error": self.error}
