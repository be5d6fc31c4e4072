"""The resource kinds Membrane serves, and kubectl-style name lookup (``po``, ``pods``, ``Pod``, ``cnp`` …)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from membrane.model.errors import ValidationError
from membrane.model.fields import show


@dataclass(frozen=True)
class KindInfo:
    """One kind: how manifests spell it, how users name it on the command line, how it is stored."""

    kind: str
    api_versions: tuple[str, ...]
    group: str  # "core" for v1 objects, else the API group ("apps", "cilium.io", …)
    plural: str
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    read_only: bool = False  # users cannot apply or delete it (the cluster manages it)
    qualified_only: bool = False  # its names belong to another kind: only Kind or plural.group find it

    @property
    def api_version(self) -> str:
        """The preferred apiVersion (what objects are written back with)."""
        return self.api_versions[0]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def names(self) -> tuple[str, ...]:
        """Every lower-case name ``lookup_kind`` accepts for this kind (group-qualified forms aside)."""
        if self.qualified_only:
            return ()
        return tuple(dict.fromkeys((self.singular, self.plural, *self.short_names)))  # "endpoints" is both


KINDS: tuple[KindInfo, ...] = (
    KindInfo("Namespace", ("v1",), "core", "namespaces", ("ns",), namespaced=False),
    KindInfo("Pod", ("v1",), "core", "pods", ("po",)),
    KindInfo("Deployment", ("apps/v1",), "apps", "deployments", ("deploy",)),
    KindInfo("Node", ("v1",), "core", "nodes", ("no",), namespaced=False, read_only=True),
    KindInfo("Service", ("v1",), "core", "services", ("svc",)),
    KindInfo("ConfigMap", ("v1",), "core", "configmaps", ("cm",)),
    KindInfo("Secret", ("v1",), "core", "secrets"),
    KindInfo("Endpoints", ("v1",), "core", "endpoints", ("ep",), read_only=True),
    KindInfo("EndpointSlice", ("discovery.k8s.io/v1",), "discovery.k8s.io", "endpointslices", read_only=True),
    KindInfo("CiliumNetworkPolicy", ("cilium.io/v2",), "cilium.io", "ciliumnetworkpolicies", ("cnp", "ciliumnp")),
    KindInfo(
        "CiliumClusterwideNetworkPolicy", ("cilium.io/v2",), "cilium.io", "ciliumclusterwidenetworkpolicies",
        ("ccnp",), namespaced=False,
    ),
    KindInfo("NetworkPolicy", ("networking.k8s.io/v1",), "networking.k8s.io", "networkpolicies", ("netpol",)),
    KindInfo(
        "CiliumLoadBalancerIPPool", ("cilium.io/v2", "cilium.io/v2alpha1"), "cilium.io", "ciliumloadbalancerippools",
        ("ippools", "ippool", "lbippool", "lbippools"), namespaced=False,
    ),
    KindInfo(
        "CiliumL2AnnouncementPolicy", ("cilium.io/v2alpha1",), "cilium.io", "ciliuml2announcementpolicies",
        ("l2announcement",), namespaced=False,
    ),
    *(KindInfo(kind, ("cilium.io/v2", "cilium.io/v2alpha1"), "cilium.io", plural, short, namespaced=False)
      for kind, plural, short in (
          ("CiliumBGPClusterConfig", "ciliumbgpclusterconfigs", ("cbgpcluster",)),
          ("CiliumBGPPeerConfig", "ciliumbgppeerconfigs", ("cbgppeer",)),
          ("CiliumBGPAdvertisement", "ciliumbgpadvertisements", ("cbgpadvert",)),
          ("CiliumBGPNodeConfigOverride", "ciliumbgpnodeconfigoverrides", ("cbgpnodeoverride",)),
      )),
    KindInfo("CiliumBGPNodeConfig", ("cilium.io/v2", "cilium.io/v2alpha1"), "cilium.io", "ciliumbgpnodeconfigs",
             ("cbgpnode",), namespaced=False, read_only=True),  # written by each node's agent
    KindInfo("CiliumEgressGatewayPolicy", ("cilium.io/v2",), "cilium.io", "ciliumegressgatewaypolicies",
             namespaced=False),  # membrane.model.egress_gw
    KindInfo("Lease", ("coordination.k8s.io/v1",), "coordination.k8s.io", "leases", read_only=True),
    KindInfo("CiliumCIDRGroup", ("cilium.io/v2alpha1", "cilium.io/v2"), "cilium.io", "ciliumcidrgroups", ("ccg",),
             namespaced=False),
    KindInfo("Event", ("v1",), "core", "events", ("ev",), read_only=True),
    # Calico's pool (encapsulation modes, membrane.model.calico_ippool); "ippools" stays Cilium's
    # LB pool as before, so this one is named IPPool or ippools.crd.projectcalico.org.
    KindInfo("IPPool", ("crd.projectcalico.org/v1", "projectcalico.org/v3"), "crd.projectcalico.org", "ippools",
             namespaced=False, qualified_only=True),
)

_BY_NAME = MappingProxyType({name: info for info in KINDS for name in info.names})
_BY_KIND = MappingProxyType({info.kind: info for info in KINDS})


def lookup_kind(name: str) -> KindInfo:
    """A kind from any kubectl-style name, case-insensitive; also ``deployments.apps`` style names.

    Raises ValidationError ``the server doesn't have a resource type "foo"`` for anything else.
    """
    exact = _BY_KIND.get(name.strip())  # a manifest's kind: IPPool is Calico's, not "ippool" (Cilium's LB pool)
    if exact is not None:
        return exact
    key = name.strip().lower()
    info = _BY_NAME.get(key)
    if info is not None:
        return info
    base, dot, group = key.partition(".")
    if dot:
        for info in KINDS:
            if group == info.group and base in (info.singular, info.plural):
                return info
    raise ValidationError(f"the server doesn't have a resource type {show(name)}")


def kind_by_name(kind: str) -> KindInfo | None:
    """The kind exactly as spelled in a manifest's ``kind`` field (``Pod``), or None."""
    return _BY_KIND.get(kind)


def kind_for_manifest(api_version: object, kind: object) -> KindInfo:
    """Check a manifest's ``apiVersion``/``kind`` pair; errors blame the field that is wrong."""
    if kind is None or kind == "":
        raise ValidationError("Required value", "kind")
    if not isinstance(kind, str):
        raise ValidationError(f"Invalid value: {show(kind)}: must be a string", "kind")
    if api_version is None or api_version == "":
        raise ValidationError("Required value", "apiVersion")
    if not isinstance(api_version, str):
        raise ValidationError(f"Invalid value: {show(api_version)}: must be a string", "apiVersion")
    info = _BY_KIND.get(kind)
    if info is None:
        near = [i.kind for i in KINDS if i.kind.lower() == kind.lower()]
        hint = f'; did you mean "{near[0]}"?' if near else f"; supported kinds: {', '.join(sorted(_BY_KIND))}"
        raise ValidationError(f"no matches for kind {show(kind)} in version {show(api_version)}{hint}", "kind")
    if api_version not in info.api_versions:
        served = " or ".join(info.api_versions)
        raise ValidationError(
            f"no matches for kind {show(kind)} in version {show(api_version)} ({kind} is served as {served})",
            "apiVersion",
        )
    return info
