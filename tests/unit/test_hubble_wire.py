"""Wire compatibility with Hubble's clients: field numbers of the messages they exchange with us.

The numbers are those of Hubble's published API (api/v1/flow/flow.proto and observer.proto); a change
here would silently break `hubble observe` against our servers.
"""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.proto.observer import observer_pb2
from membrane.hubble.proto.peer import peer_pb2

EXPECTED = {
    flow_pb2.Endpoint: dict(ID=1, identity=2, namespace=3, labels=4, pod_name=5, workloads=6),
    flow_pb2.TCP: dict(source_port=1, destination_port=2, flags=3),
    flow_pb2.TCPFlags: dict(FIN=1, SYN=2, RST=3, PSH=4, ACK=5, URG=6, ECE=7, CWR=8, NS=9),
    flow_pb2.IP: dict(source=1, destination=2, ipVersion=3, encrypted=4),
    observer_pb2.GetFlowsRequest: dict(number=1, follow=3, blacklist=5, whitelist=6, since=7, until=8, first=9),
    observer_pb2.GetFlowsResponse: dict(flow=1, node_status=2, lost_events=3, node_name=1000, time=1001),
    observer_pb2.ServerStatusResponse: dict(num_flows=1, max_flows=2, seen_flows=3, uptime_ns=4,
                                            num_connected_nodes=5, num_unavailable_nodes=6, unavailable_nodes=7,
                                            version=8, flows_rate=9),
    flow_pb2.Flow: dict(time=1, uuid=34, verdict=2, drop_reason=3, ethernet=4, IP=5, l4=6, source=8, destination=9,
                        Type=10, node_name=11, source_names=13, destination_names=14, l7=15, event_type=19,
                        source_service=20, destination_service=21, traffic_direction=22, policy_match_type=23,
                        trace_observation_point=24, drop_reason_desc=25, is_reply=26, interface=28,
                        Summary=100000, egress_allowed_by=21001, ingress_allowed_by=21002, egress_denied_by=21004,
                        ingress_denied_by=21005, policy_log=21006),
    flow_pb2.Policy: dict(name=1, namespace=2, labels=3, revision=4, kind=5),
    flow_pb2.Service: dict(name=1, namespace=2),
    flow_pb2.LostEvent: dict(source=1, num_events_lost=2, cpu=3),
    flow_pb2.AgentEvent: dict(type=1, unknown=100, agent_start=101, policy_update=102, endpoint_regenerate=103,
                              endpoint_update=104, ipcache_update=105, service_upsert=106, service_delete=107),
    flow_pb2.PolicyUpdateNotification: dict(labels=1, revision=2, rule_count=3),
    flow_pb2.EndpointUpdateNotification: dict(id=1, labels=2, error=3, pod_name=4, namespace=5),
    flow_pb2.IPCacheNotification: dict(cidr=1, identity=2, old_identity=3, host_ip=4, old_host_ip=5,
                                       encrypt_key=6, namespace=7, pod_name=8),
    flow_pb2.ServiceUpsertNotification: dict(id=1, frontend_address=2, backend_addresses=3, type=4, name=6,
                                             namespace=7, ext_traffic_policy=8, int_traffic_policy=9),
    flow_pb2.ServiceUpsertNotificationAddr: dict(ip=1, port=2),
    flow_pb2.ServiceDeleteNotification: dict(id=1),
    flow_pb2.FlowFilter: dict(uuid=29, source_ip=1, source_pod=2, source_fqdn=7, source_label=10, source_service=16,
                              destination_ip=3, destination_pod=4, destination_service=17, experimental=999),
    flow_pb2.FlowFilter.Experimental: dict(cel_expression=1),
    observer_pb2.GetAgentEventsRequest: dict(number=1, follow=2, since=7, until=8, first=9),
    observer_pb2.GetAgentEventsResponse: dict(agent_event=1, node_name=1000, time=1001),
    observer_pb2.GetDebugEventsResponse: dict(debug_event=1, node_name=1000, time=1001),
    observer_pb2.Node: dict(name=1, version=2, address=3, state=4, tls=5, uptime_ns=6, num_flows=7, max_flows=8,
                            seen_flows=9),
    peer_pb2.ChangeNotification: dict(name=1, address=2, type=3, tls=4),
    peer_pb2.TLS: dict(server_name=1),
}


@pytest.mark.parametrize("message", list(EXPECTED), ids=lambda m: m.DESCRIPTOR.full_name)
def test_field_numbers_match_hubbles_api(message: type) -> None:
    desc: Descriptor = message.DESCRIPTOR
    got = {f.name: f.number for f in desc.fields}
    assert {name: got.get(name) for name in EXPECTED[message]} == EXPECTED[message]


def test_wrapped_fields_keep_their_wire_types() -> None:
    status = observer_pb2.ServerStatusResponse.DESCRIPTOR.fields_by_name
    assert status["num_connected_nodes"].message_type.full_name == "google.protobuf.UInt32Value"
    assert flow_pb2.Flow.DESCRIPTOR.fields_by_name["is_reply"].message_type.full_name == "google.protobuf.BoolValue"
    assert flow_pb2.Flow.DESCRIPTOR.fields_by_name["verdict"].type == FieldDescriptor.TYPE_ENUM
    assert flow_pb2.TraceObservationPoint.Value("TO_ENDPOINT") == 101
    assert flow_pb2.DropReason.Value("POLICY_DENIED") == 133 and flow_pb2.DropReason.Value("POLICY_DENY") == 181


def test_agent_event_and_peer_enums_match_hubbles_api() -> None:
    assert flow_pb2.AgentEventType.Value("AGENT_STARTED") == 2
    assert flow_pb2.AgentEventType.Value("ENDPOINT_CREATED") == 7 and flow_pb2.AgentEventType.Value("SERVICE_DELETED") == 12
    assert flow_pb2.LostEventSource.Value("PERF_EVENT_RING_BUFFER") == 1
    assert flow_pb2.LostEventSource.Value("HUBBLE_RING_BUFFER") == 3
    assert peer_pb2.ChangeNotificationType.Value("PEER_ADDED") == 1
    assert peer_pb2.ChangeNotificationType.Value("PEER_DELETED") == 2
    assert peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name == "peer.Peer"
