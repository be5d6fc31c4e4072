"""``membrane observe``: the ``hubble observe`` experience against the lab's relay (or one agent).

Connects over gRPC to ``observer.Observer/GetFlows`` on ``unix:///run/membrane/<lab>/relay.sock`` by default,
``--node N`` for one agent's ``hubble-<N>.sock``, or ``--server unix://PATH|HOST:PORT``; a node's
``HOST:4244`` takes only mutual TLS (``--tls`` and its files, see :mod:`membrane.cli.observe_tls`). Filter flags
become FlowFilters exactly as hubble builds them (see :mod:`membrane.cli.observe_filters`); output is
``-o compact`` (default), ``json``/``jsonpb``, ``dict`` or ``table``. Ctrl-C ends ``--follow`` cleanly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from membrane.cli import observe_tls
from membrane.cli.observe_filters import FILTER_FLAGS, SWITCHES, FilterError, build_filters
from membrane.cli.observe_time import parse_time, to_rfc3339
from membrane.hubble.timefmt import TIME_FORMATS

if TYPE_CHECKING:  # grpc is imported only when a command talks to a server
    from membrane.hubbleserver.tls import ClientTLS

OUTPUTS = ("compact", "json", "jsonpb", "dict", "table")
# `observe agent-events|debug-events`: the Observer method and its request message
_EVENT_CALLS = {"agent-events": ("GetAgentEvents", "GetAgentEventsRequest"),
                "debug-events": ("GetDebugEvents", "GetDebugEventsRequest")}
DEFAULT_LAST = 20
_SHORT = {"label": "-l", "namespace": "-n", "type": "-t", "ipv4": "-4", "ipv6": "-6", "all-namespaces": "-A"}
_HELP = {
    "pod": "flows from or to a pod ([namespace/]pod, prefix)",
    "namespace": "flows from or to pods of a namespace",
    "label": "flows from or to endpoints with labels (selector)",
    "ip": "flows from or to an IP or CIDR",
    "port": "flows from or to a L4 port",
    "identity": "flows from or to a security identity (number or reserved name)",
    "protocol": "L4/L7 protocol: tcp, udp, icmp, icmpv4, icmpv6, sctp, http, dns, kafka",
    "verdict": "FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED",
    "type": "event type: trace[:point], drop, policy-verdict, capture, l7, trace-sock, debug, agent",
    "traffic-direction": "ingress or egress",
    "node-name": "flows observed on a node (name or pattern)",
    "service": "flows from or to a Service (namespace/name, prefix; a ClusterIP/NodePort or its backends)",
    "drop-reason-desc": "drops for a reason (DropReason name, e.g. POLICY_DENIED)",
    "tcp-flags": "TCP flows with all these flags set (e.g. SYN or SYN,ACK; repeat to OR)",
    "uuid": "the flow with this UUID",
    "workload": "flows from or to a workload (name or kind/name, e.g. Deployment/web)",
    "fqdn": "flows from or to a DNS name the DNS proxy saw resolved (pattern, e.g. '*.cilium.io')",
    "reply": "true: only replies, false: only requests (flows whose direction is known)",
    "ipv4": "IPv4 flows only", "ipv6": "IPv6 flows only",
    "cel-expression": "flows for which a CEL expression over _flow is true (e.g. '_flow.verdict == Verdict.DROPPED')",
    "all-namespaces": "flows of every namespace (the default; conflicts with -n)",
    "http-status": "HTTP responses with this status code (e.g. 403, or 5+ for any 5xx)",
    "http-method": "HTTP flows with this method (e.g. GET)",
    "http-path": "HTTP flows whose URL path matches this regex",
    "http-url": "HTTP flows whose URL matches this regex",
}


class _FilterFlag(argparse.Action):
    """Records ``(flag, value)`` in command-line order: ``--not`` applies to the next filter."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        flags = list(getattr(namespace, self.dest, None) or [])
        flags.append((self.metavar_name, values if isinstance(values, str) else None))
        setattr(namespace, self.dest, flags)

    def __init__(self, *args: Any, flag: str = "", **kwargs: Any) -> None:
        self.metavar_name = flag
        super().__init__(*args, **kwargs)


def add_parser(subparsers: Any, lab_arg: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    p = subparsers.add_parser("observe", help="observe flows (hubble observe)")
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    if lab_arg is not None:
        lab_arg(p)
    p.add_argument("events", nargs="?", choices=tuple(_EVENT_CALLS), default=None,
                   help="agent-events or debug-events instead of flows")
    conn = p.add_argument_group("server")
    conn.add_argument("--server", default=None, help="unix:///path/to/sock or host:port (default: the lab's relay)")
    conn.add_argument("--node", default=None, help="talk to this node's agent instead of the relay")
    conn.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the server")
    observe_tls.add_flags(conn)
    sel = p.add_argument_group("selection")
    sel.add_argument("-f", "--follow", action="store_true", help="keep printing flows as they come")
    sel.add_argument("--last", type=int, default=0, help=f"the last N flows (default {DEFAULT_LAST})")
    sel.add_argument("--first", type=int, default=0, help="the first N flows of the ring")
    sel.add_argument("--since", default=None, help="flows since (RFC3339 or duration like 5m)")
    sel.add_argument("--until", default=None, help="flows until (RFC3339 or duration like 5m)")
    flt = p.add_argument_group("filters (repeated values ORed, different flags ANDed)")
    flt.add_argument("--not", dest="filters", nargs=0, action=_FilterFlag, flag="not",
                     help="negate the next filter")
    for name in FILTER_FLAGS:
        opts = [_SHORT[name], f"--{name}"] if name in _SHORT else [f"--{name}"]
        base = name.removeprefix("from-").removeprefix("to-")
        side = "from" if name.startswith("from-") else "to" if name.startswith("to-") else ""
        text = _HELP.get(name) or f"{_HELP.get(base, base)} ({side} side only)"
        flt.add_argument(*opts, dest="filters", action=_FilterFlag, flag=name, metavar="VALUE", help=text)
    for name in SWITCHES:
        flt.add_argument(_SHORT[name], f"--{name}", dest="filters", nargs=0, action=_FilterFlag, flag=name,
                         help=_HELP[name])
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", choices=OUTPUTS, default="compact")
    out.add_argument("--print-node-name", action="store_true", help="print the node that observed the flow")
    out.add_argument("--numeric", action="store_true", help="print IP addresses, not pod or Service names")
    out.add_argument("--print-policy-names", action="store_true",
                     help="print the names of the policies that allowed or denied each policy verdict")
    out.add_argument("--time-format", default="StampMilli", choices=TIME_FORMATS, metavar="FORMAT",
                     help=f"timestamps as {', '.join(TIME_FORMATS)} (default StampMilli)")
    p.set_defaults(filters=[])


def server_target(args: argparse.Namespace) -> str:
    """The gRPC target: ``--server`` as given, else the node's or the relay's unix socket in the lab."""
    if args.server:
        return str(args.server)
    from membrane.cli.target import agent_socket, relay_target

    if args.node:
        return f"unix://{agent_socket(args.lab, args.node, 'hubbleSocket')}"
    return relay_target(args.lab)


def build_request(args: argparse.Namespace, now: Any = None) -> dict[str, Any]:
    """A GetFlowsRequest as a proto-JSON dict (proto field names) from parsed arguments."""
    if args.first and args.last:
        raise FilterError("cannot set both --first and --last")
    if args.first and args.follow:
        raise FilterError("cannot set both --first and --follow")
    if args.follow and args.output == "table":
        raise FilterError("-o table cannot be used with --follow")
    req: dict[str, Any] = {}
    if args.first:
        req.update(number=args.first, first=True)
    elif args.last:
        req["number"] = args.last
    elif not (args.follow or args.since or args.until):
        req["number"] = DEFAULT_LAST
    if args.follow:
        req["follow"] = True
    for key in ("since", "until"):
        if getattr(args, key):
            try:
                req[key] = to_rfc3339(parse_time(getattr(args, key), now))
            except ValueError as exc:
                raise FilterError(f"--{key}: {exc}") from None
    whitelist, blacklist = build_filters(list(args.filters or []))
    if whitelist:
        req["whitelist"] = whitelist
    if blacklist:
        req["blacklist"] = blacklist
    return req


def _wait_ready(channel: Any, timeout: float, fail_fast: bool) -> bool:
    """READY within ``timeout``; with ``fail_fast`` the first TRANSIENT_FAILURE ends the wait (a TCP
    server that refuses the connection or its handshake does not change its mind on a retry)."""
    import threading

    import grpc

    if not fail_fast:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
            return True
        except grpc.FutureTimeoutError:
            return False
    settled = threading.Event()
    state: list[Any] = []

    def watch(connectivity: Any) -> None:
        if connectivity in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            state.append(connectivity)
            settled.set()

    channel.subscribe(watch, try_to_connect=True)
    try:
        settled.wait(timeout)
    finally:
        channel.unsubscribe(watch)
    return bool(state) and state[0] == grpc.ChannelConnectivity.READY


def _stream(target: str, request: dict[str, Any], timeout: float, tls: ClientTLS | None = None,
            lab: str = "", events: str = "") -> tuple[Any, Iterable[Any]]:
    import grpc
    from google.protobuf import json_format

    from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc

    channel = tls.channel(target) if tls is not None else grpc.insecure_channel(target)
    tcp = not target.startswith("unix:")
    if not _wait_ready(channel, timeout, fail_fast=tcp):
        channel.close()
        if tcp:
            raise ConnectionError(observe_tls.explain_failure(target, tls, lab))
        raise ConnectionError(f"cannot connect to the Hubble server at {target}")
    stub = observer_pb2_grpc.ObserverStub(channel)
    if events:  # agent-events / debug-events
        method, message = _EVENT_CALLS[events]
        call = getattr(stub, method)(json_format.ParseDict(request, getattr(observer_pb2, message)()))
    else:
        call = stub.GetFlows(json_format.ParseDict(request, observer_pb2.GetFlowsRequest()))
    return channel, call


def build_events_request(args: argparse.Namespace) -> dict[str, Any]:
    """A Get{Agent,Debug}EventsRequest dict: the selection flags only (these events take no filters)."""
    if args.filters:
        raise FilterError(f"observe {args.events} takes no filter flags")
    request = build_request(args)
    return {k: v for k, v in request.items() if k in ("number", "first", "follow", "since", "until")}


def run(args: argparse.Namespace) -> int:
    from membrane.cli.arguments import CLIError
    from membrane.cli.observe_output import EventPrinter, FlowPrinter

    try:
        request = build_events_request(args) if args.events else build_request(args)
    except FilterError as exc:
        raise CLIError(str(exc)) from None
    target = server_target(args)
    # gRPC core logs failed handshakes to stderr; the user gets one line from us instead.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from membrane.hubbleserver.tls import TLSConfigError

    try:
        tls = observe_tls.client_tls(args, target)
        if tls is not None:
            tls.credentials()  # read the files now: a missing one is a one-line error
    except (observe_tls.TLSFlagError, TLSConfigError) as exc:
        raise CLIError(str(exc)) from None
    printer = FlowPrinter(args.output, print_node_name=args.print_node_name, numeric=args.numeric,
                          time_format=args.time_format, policy_names=args.print_policy_names)
    if args.events:
        if args.output in ("table", "dict"):
            raise CLIError(f"-o {args.output} is for flows; observe {args.events} prints compact or json")
        printer = EventPrinter(args.output, print_node_name=args.print_node_name, time_format=args.time_format)
    import grpc

    try:
        channel, call = _stream(target, request, args.timeout, tls, args.lab, args.events or "")
    except ConnectionError as exc:
        raise CLIError(str(exc)) from None
    try:
        for response in call:
            printer.write(response, sys.stdout)
    except KeyboardInterrupt:
        call.cancel()
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            method = _EVENT_CALLS[args.events][0] if args.events else "GetFlows"
            raise CLIError(f"{method} from {target}: {exc.code().name}: {exc.details()}") from None
    finally:
        printer.close(sys.stdout)
        channel.close()
    return 0
