"""Value types and resources (Pod, Deployment, Node, Service, policies) with validation and precise errors; no I/O.

Modules:
  kinds       the kinds served and kubectl-style name lookup (``po``, ``deploy``, ``cnp`` …)
  loader      YAML/JSON manifests -> located dicts (files are read by membrane.cli.manifests)
  validate    ``validate_object``: envelope checks, then the kind's module; normalised deep copy out
  fields      typed field access with Kubernetes-style error reasons (``Required value`` …)
  names       DNS-1123/1035 names, IANA service names, qualified names
  labels      label syntax, ``LabelSelector``, ``membrane label`` argument parsing
  metadata    ObjectMeta; podspec/pod, deployment, service, namespace, node: per-kind rules
  policy, policy_ports, fqdn, netpol   CiliumNetworkPolicy/CCNP and Kubernetes NetworkPolicy structure
"""
