"""The L4/L7 part of Cilium policy rules: ``toPorts`` (ports, L7 rules, TLS) and ``icmps``.

Structural validation: known fields, value syntax, and the combinations Cilium rejects at import
(several L7 kinds in one port rule, DNS rules without a port, an ``endPort`` below ``port``).
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

from membrane.model import names
from membrane.model.fields import (
    Fields,
    as_int,
    as_str,
    decimal_value,
    in_range,
    invalid,
    is_decimal,
    missing,
    unsupported,
)
from membrane.model.fqdn import check_fqdn_selector

PORT_PROTOCOLS = ("TCP", "UDP", "SCTP", "ICMP", "ANY")
MAX_PORTS = 40
MAX_ICMP_FIELDS = 40
PORT_RULE_FIELDS = ("ports", "rules", "terminatingTLS", "originatingTLS", "serverNames", "listener")
PORT_DENY_RULE_FIELDS = ("ports",)
PORT_PROTOCOL_FIELDS = ("port", "endPort", "protocol")
L7_RULE_FIELDS = ("http", "kafka", "dns", "l7proto", "l7")
HTTP_RULE_FIELDS = ("method", "path", "host", "headers", "headerMatches")
HEADER_MATCH_FIELDS = ("name", "value", "secret", "mismatch")
KAFKA_RULE_FIELDS = ("role", "apiKey", "apiVersion", "clientID", "topic")
TLS_FIELDS = ("secret", "trustedCA", "certificate", "privateKey")
SECRET_FIELDS = ("namespace", "name")
LISTENER_FIELDS = ("envoyConfig", "name", "priority")

ICMP4_TYPES = MappingProxyType({
    "EchoReply": 0, "DestinationUnreachable": 3, "Redirect": 5, "Echo": 8, "EchoRequest": 8,
    "RouterAdvertisement": 9, "RouterSelection": 10, "TimeExceeded": 11, "ParameterProblem": 12,
    "Timestamp": 13, "TimestampReply": 14, "Photuris": 40, "ExtendedEchoRequest": 42, "ExtendedEchoReply": 43,
})
ICMP6_TYPES = MappingProxyType({
    "DestinationUnreachable": 1, "PacketTooBig": 2, "TimeExceeded": 3, "ParameterProblem": 4,
    "EchoRequest": 128, "EchoReply": 129, "MulticastListenerQuery": 130, "MulticastListenerReport": 131,
    "MulticastListenerDone": 132, "RouterSolicitation": 133, "RouterAdvertisement": 134,
    "NeighborSolicitation": 135, "NeighborAdvertisement": 136, "RedirectMessage": 137, "RouterRenumbering": 138,
    "ICMPNodeInformationQuery": 139, "ICMPNodeInformationResponse": 140,
    "InverseNeighborDiscoverySolicitation": 141, "InverseNeighborDiscoveryAdvertisement": 142,
    "HomeAgentAddressDiscoveryRequest": 144, "HomeAgentAddressDiscoveryReply": 145,
    "MobilePrefixSolicitation": 146, "MobilePrefixAdvertisement": 147,
    "DuplicateAddressRequestCodeSuffix": 157, "DuplicateAddressConfirmationCodeSuffix": 158,
    "ExtendedEchoRequest": 160, "ExtendedEchoReply": 161,
})


def icmp_type_number(family: str, value: int | str) -> int:
    """An ``icmps`` type (number or CamelCase name) as a number; KeyError for an unknown name."""
    if isinstance(value, int):
        return value
    table = ICMP6_TYPES if family == "IPv6" else ICMP4_TYPES
    return table[value]


def _check_port_protocol(data: Any, path: str) -> tuple[str, str]:
    """One ``ports`` entry; a numeric ``port`` may be written unquoted and is stored as a string."""
    f = Fields(data, path, PORT_PROTOCOL_FIELDS)
    raw = f.raw("port")
    if raw is None:
        port = ""
    elif isinstance(raw, int) and not isinstance(raw, bool):
        port = str(raw)
        f.set("port", port)
    else:
        port = as_str(raw, f.at("port"))
    number: int | None = None
    if is_decimal(port):
        number = decimal_value(port, 65535)
        if number > 65535:
            raise invalid(f.at("port"), port, "must be between 0 and 65535, inclusive")
    elif port:
        why = names.iana_svc_name_error(port.lower())
        if why is not None:
            raise invalid(f.at("port"), port, f"must be a port number (0-65535) or a port name: {why}")
    end = f.integer("endPort", lo=0, hi=65535)
    if end and number and end < number:
        raise invalid(f.at("endPort"), end, f"must be greater than or equal to port ({number})")
    protocol = f.string("protocol") or "ANY"  # empty means any protocol
    if protocol not in PORT_PROTOCOLS:
        raise unsupported(f.at("protocol"), protocol, PORT_PROTOCOLS)
    return port, protocol


def _check_secret(data: Any, path: str) -> None:
    f = Fields(data, path, SECRET_FIELDS)
    f.string("namespace", check=names.dns1123_label_error)
    f.string("name", required=True, check=names.dns1123_subdomain_error)


def _check_tls(data: Any, path: str) -> None:
    f = Fields(data, path, TLS_FIELDS)
    if f.has("secret"):
        _check_secret(f.raw("secret"), f.at("secret"))
    for key in ("trustedCA", "certificate", "privateKey"):
        f.string(key)


def _check_http(data: Any, path: str) -> None:
    f = Fields(data, path, HTTP_RULE_FIELDS)
    for key in ("method", "path", "host"):
        pattern = f.string(key)
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise invalid(f.at(key), pattern, f"is not a valid regular expression: {exc}") from None
    f.strings("headers")
    for hpath, item in f.each("headerMatches"):
        h = Fields(item, hpath, HEADER_MATCH_FIELDS)
        h.string("name", required=True)
        h.string("value")
        h.choice("mismatch", ("", "LOG", "ADD", "DELETE", "REPLACE"))
        if h.has("secret"):
            _check_secret(h.raw("secret"), h.at("secret"))


def _check_kafka(data: Any, path: str) -> None:
    f = Fields(data, path, KAFKA_RULE_FIELDS)
    role = f.string("role")
    if role and role.lower() not in ("produce", "consume"):
        raise unsupported(f.at("role"), role, ("consume", "produce"))
    if role and f.string("apiKey"):
        raise invalid(f.at("apiKey"), f.raw("apiKey"), "cannot be combined with role")
    version = f.string("apiVersion")
    if version and not (is_decimal(version) and decimal_value(version, 32767) <= 32767):
        raise invalid(f.at("apiVersion"), version, "must be a decimal number (int16)")
    f.string("clientID")
    topic = f.string("topic")
    if topic and (len(topic) > 255 or not all(c.isalnum() or c in "._-" for c in topic)):
        raise invalid(f.at("topic"), topic, "must be at most 255 characters of a-z, A-Z, 0-9, '.', '_' and '-'")


def _check_l7_rules(data: Any, path: str) -> str:
    """The ``rules`` union; returns the L7 kind used ("http", "kafka", "dns" or the l7proto name)."""
    f = Fields(data, path, L7_RULE_FIELDS)
    present = [k for k in ("http", "kafka", "dns") if f.has(k)]
    proto = f.string("l7proto")
    if f.has("l7") and not proto:
        raise invalid(f.at("l7"), f.raw("l7"), "generic L7 rules need `l7proto` to name the parser")
    if proto:
        present.append("l7proto")
    if len(present) > 1:
        raise invalid(path, sorted(present), "multiple L7 protocol rule types specified in single rule")
    for ipath, item in f.each("http"):
        _check_http(item, ipath)
    for ipath, item in f.each("kafka"):
        _check_kafka(item, ipath)
    for ipath, item in f.each("dns"):
        check_fqdn_selector(item, ipath)
    for ipath, item in f.each("l7"):
        l7 = Fields(item, ipath, item.keys() if isinstance(item, dict) else ())
        for key in l7.data:
            l7.string(key)
    return present[0] if present else ""


_SERVER_NAME = re.compile(r"^[-a-zA-Z0-9_.*]+$")


def _check_server_name(name: str, path: str) -> None:
    """A TLS server name or pattern (``*`` within a label, a leading ``**.``), as ``matchPattern``."""
    if not name or len(name) > 255:
        raise invalid(path, name, "must be 1-255 characters")
    if not _SERVER_NAME.match(name):
        raise invalid(path, name, "may only contain a-z, A-Z, 0-9, '-', '_', '.' and '*'")


def check_port_rule(data: Any, path: str, *, deny: bool = False) -> dict[str, Any]:
    """One ``toPorts`` entry. Deny rules carry ``ports`` only (no L7, TLS or listeners)."""
    f = Fields(data, path, PORT_DENY_RULE_FIELDS if deny else PORT_RULE_FIELDS)
    ports = [_check_port_protocol(item, ipath) for ipath, item in f.each("ports", max_items=MAX_PORTS)]
    if deny:
        return f.data
    l7 = _check_l7_rules(f.raw("rules"), f.at("rules")) if f.has("rules") else ""
    if l7 in ("http", "kafka"):
        for (_port, protocol), (ppath, _item) in zip(ports, f.each("ports", max_items=MAX_PORTS), strict=True):
            if protocol not in ("TCP", "ANY"):
                raise invalid(f"{ppath}.protocol", protocol, f"{l7} rules need TCP")
    if l7 == "dns":
        for port, _protocol in ports:
            if port in ("", "0"):
                raise invalid(f.at("ports"), f.raw("ports") or [], "DNS rules need an explicit port (e.g. 53)")
    for key in ("terminatingTLS", "originatingTLS"):
        if f.has(key):
            _check_tls(f.raw(key), f.at(key))
    for npath, name in enumerate(f.strings("serverNames") or []):
        _check_server_name(name, f"{f.at('serverNames')}[{npath}]")
    if f.has("listener"):
        lst = Fields(f.raw("listener"), f.at("listener"), LISTENER_FIELDS)
        cfg = Fields(lst.mapping("envoyConfig", required=True), lst.at("envoyConfig"), ("kind", "name"))
        cfg.choice("kind", ("CiliumEnvoyConfig", "CiliumClusterwideEnvoyConfig"))
        cfg.string("name", required=True)
        lst.string("name", required=True)
        lst.integer("priority", lo=1, hi=100)
    return f.data


def check_icmp_rule(data: Any, path: str) -> dict[str, Any]:
    """One ``icmps`` entry: ``fields`` of ``{family: IPv4|IPv6, type: 0-255 or a CamelCase name}``."""
    f = Fields(data, path, ("fields",))
    for ipath, item in f.each("fields", max_items=MAX_ICMP_FIELDS):
        i = Fields(item, ipath, ("family", "type"))
        family = i.choice("family", ("IPv4", "IPv6")) or "IPv4"
        value = i.raw("type")
        if value is None:
            raise missing(i.at("type"), "an ICMP type number (0-255) or name")
        if isinstance(value, str) and not is_decimal(value):
            table = ICMP6_TYPES if family == "IPv6" else ICMP4_TYPES
            if value not in table:
                raise unsupported(i.at("type"), value, table.keys())
        else:
            number = decimal_value(value, 255) if isinstance(value, str) else as_int(value, i.at("type"))
            in_range(number, 0, 255, i.at("type"))
    return f.data
