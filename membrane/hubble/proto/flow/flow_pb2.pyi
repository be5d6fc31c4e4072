# ruff: noqa
import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FlowType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN_TYPE: _ClassVar[FlowType]
    L3_L4: _ClassVar[FlowType]
    L7: _ClassVar[FlowType]
    SOCK: _ClassVar[FlowType]

class AuthType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISABLED: _ClassVar[AuthType]
    SPIRE: _ClassVar[AuthType]
    TEST_ALWAYS_FAIL: _ClassVar[AuthType]

class TraceObservationPoint(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN_POINT: _ClassVar[TraceObservationPoint]
    TO_PROXY: _ClassVar[TraceObservationPoint]
    TO_HOST: _ClassVar[TraceObservationPoint]
    TO_STACK: _ClassVar[TraceObservationPoint]
    TO_OVERLAY: _ClassVar[TraceObservationPoint]
    TO_ENDPOINT: _ClassVar[TraceObservationPoint]
    FROM_ENDPOINT: _ClassVar[TraceObservationPoint]
    FROM_PROXY: _ClassVar[TraceObservationPoint]
    FROM_HOST: _ClassVar[TraceObservationPoint]
    FROM_STACK: _ClassVar[TraceObservationPoint]
    FROM_OVERLAY: _ClassVar[TraceObservationPoint]
    FROM_NETWORK: _ClassVar[TraceObservationPoint]
    TO_NETWORK: _ClassVar[TraceObservationPoint]
    FROM_CRYPTO: _ClassVar[TraceObservationPoint]
    TO_CRYPTO: _ClassVar[TraceObservationPoint]

class TraceReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACE_REASON_UNKNOWN: _ClassVar[TraceReason]
    NEW: _ClassVar[TraceReason]
    ESTABLISHED: _ClassVar[TraceReason]
    REPLY: _ClassVar[TraceReason]
    RELATED: _ClassVar[TraceReason]
    REOPENED: _ClassVar[TraceReason]
    SRV6_ENCAP: _ClassVar[TraceReason]
    SRV6_DECAP: _ClassVar[TraceReason]
    ENCRYPT_OVERLAY: _ClassVar[TraceReason]

class L7FlowType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN_L7_TYPE: _ClassVar[L7FlowType]
    REQUEST: _ClassVar[L7FlowType]
    RESPONSE: _ClassVar[L7FlowType]
    SAMPLE: _ClassVar[L7FlowType]

class IPVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IP_NOT_USED: _ClassVar[IPVersion]
    IPv4: _ClassVar[IPVersion]
    IPv6: _ClassVar[IPVersion]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNKNOWN: _ClassVar[Verdict]
    FORWARDED: _ClassVar[Verdict]
    DROPPED: _ClassVar[Verdict]
    ERROR: _ClassVar[Verdict]
    AUDIT: _ClassVar[Verdict]
    REDIRECTED: _ClassVar[Verdict]
    TRACED: _ClassVar[Verdict]
    TRANSLATED: _ClassVar[Verdict]

class DropReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DROP_REASON_UNKNOWN: _ClassVar[DropReason]
    INVALID_SOURCE_MAC: _ClassVar[DropReason]
    INVALID_DESTINATION_MAC: _ClassVar[DropReason]
    INVALID_SOURCE_IP: _ClassVar[DropReason]
    POLICY_DENIED: _ClassVar[DropReason]
    INVALID_PACKET_DROPPED: _ClassVar[DropReason]
    CT_TRUNCATED_OR_INVALID_HEADER: _ClassVar[DropReason]
    CT_MISSING_TCP_ACK_FLAG: _ClassVar[DropReason]
    CT_UNKNOWN_L4_PROTOCOL: _ClassVar[DropReason]
    CT_CANNOT_CREATE_ENTRY_FROM_PACKET: _ClassVar[DropReason]
    UNSUPPORTED_L3_PROTOCOL: _ClassVar[DropReason]
    MISSED_TAIL_CALL: _ClassVar[DropReason]
    ERROR_WRITING_TO_PACKET: _ClassVar[DropReason]
    UNKNOWN_L4_PROTOCOL: _ClassVar[DropReason]
    UNKNOWN_ICMPV4_CODE: _ClassVar[DropReason]
    UNKNOWN_ICMPV4_TYPE: _ClassVar[DropReason]
    UNKNOWN_ICMPV6_CODE: _ClassVar[DropReason]
    UNKNOWN_ICMPV6_TYPE: _ClassVar[DropReason]
    ERROR_RETRIEVING_TUNNEL_KEY: _ClassVar[DropReason]
    ERROR_RETRIEVING_TUNNEL_OPTIONS: _ClassVar[DropReason]
    INVALID_GENEVE_OPTION: _ClassVar[DropReason]
    UNKNOWN_L3_TARGET_ADDRESS: _ClassVar[DropReason]
    STALE_OR_UNROUTABLE_IP: _ClassVar[DropReason]
    NO_MATCHING_LOCAL_CONTAINER_FOUND: _ClassVar[DropReason]
    ERROR_WHILE_CORRECTING_L3_CHECKSUM: _ClassVar[DropReason]
    ERROR_WHILE_CORRECTING_L4_CHECKSUM: _ClassVar[DropReason]
    CT_MAP_INSERTION_FAILED: _ClassVar[DropReason]
    INVALID_IPV6_EXTENSION_HEADER: _ClassVar[DropReason]
    IP_FRAGMENTATION_NOT_SUPPORTED: _ClassVar[DropReason]
    SERVICE_BACKEND_NOT_FOUND: _ClassVar[DropReason]
    NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT: _ClassVar[DropReason]
    FAILED_TO_INSERT_INTO_PROXYMAP: _ClassVar[DropReason]
    REACHED_EDT_RATE_LIMITING_DROP_HORIZON: _ClassVar[DropReason]
    UNKNOWN_CONNECTION_TRACKING_STATE: _ClassVar[DropReason]
    LOCAL_HOST_IS_UNREACHABLE: _ClassVar[DropReason]
    NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION: _ClassVar[DropReason]
    UNSUPPORTED_L2_PROTOCOL: _ClassVar[DropReason]
    NO_MAPPING_FOR_NAT_MASQUERADE: _ClassVar[DropReason]
    UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE: _ClassVar[DropReason]
    FIB_LOOKUP_FAILED: _ClassVar[DropReason]
    ENCAPSULATION_TRAFFIC_IS_PROHIBITED: _ClassVar[DropReason]
    INVALID_IDENTITY: _ClassVar[DropReason]
    UNKNOWN_SENDER: _ClassVar[DropReason]
    NAT_NOT_NEEDED: _ClassVar[DropReason]
    IS_A_CLUSTERIP: _ClassVar[DropReason]
    FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND: _ClassVar[DropReason]
    FORBIDDEN_ICMPV6_MESSAGE: _ClassVar[DropReason]
    DENIED_BY_LB_SRC_RANGE_CHECK: _ClassVar[DropReason]
    SOCKET_LOOKUP_FAILED: _ClassVar[DropReason]
    SOCKET_ASSIGN_FAILED: _ClassVar[DropReason]
    PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL: _ClassVar[DropReason]
    POLICY_DENY: _ClassVar[DropReason]
    VLAN_FILTERED: _ClassVar[DropReason]
    INVALID_VNI: _ClassVar[DropReason]
    INVALID_TC_BUFFER: _ClassVar[DropReason]
    NO_SID: _ClassVar[DropReason]
    MISSING_SRV6_STATE: _ClassVar[DropReason]
    NAT46: _ClassVar[DropReason]
    NAT64: _ClassVar[DropReason]
    AUTH_REQUIRED: _ClassVar[DropReason]
    CT_NO_MAP_FOUND: _ClassVar[DropReason]
    SNAT_NO_MAP_FOUND: _ClassVar[DropReason]
    INVALID_CLUSTER_ID: _ClassVar[DropReason]
    UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP: _ClassVar[DropReason]
    NO_EGRESS_GATEWAY: _ClassVar[DropReason]
    UNENCRYPTED_TRAFFIC: _ClassVar[DropReason]
    TTL_EXCEEDED: _ClassVar[DropReason]
    NO_NODE_ID: _ClassVar[DropReason]
    DROP_RATE_LIMITED: _ClassVar[DropReason]
    IGMP_HANDLED: _ClassVar[DropReason]
    IGMP_SUBSCRIBED: _ClassVar[DropReason]
    MULTICAST_HANDLED: _ClassVar[DropReason]
    DROP_HOST_NOT_READY: _ClassVar[DropReason]
    DROP_EP_NOT_READY: _ClassVar[DropReason]
    DROP_NO_EGRESS_IP: _ClassVar[DropReason]
    DROP_PUNT_PROXY: _ClassVar[DropReason]

class TrafficDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAFFIC_DIRECTION_UNKNOWN: _ClassVar[TrafficDirection]
    INGRESS: _ClassVar[TrafficDirection]
    EGRESS: _ClassVar[TrafficDirection]

class DebugCapturePoint(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DBG_CAPTURE_POINT_UNKNOWN: _ClassVar[DebugCapturePoint]
    DBG_CAPTURE_DELIVERY: _ClassVar[DebugCapturePoint]
    DBG_CAPTURE_FROM_LB: _ClassVar[DebugCapturePoint]
    DBG_CAPTURE_AFTER_V46: _ClassVar[DebugCapturePoint]
    DBG_CAPTURE_AFTER_V64: _ClassVar[DebugCapturePoint]
    DBG_CAPTURE_PROXY_PRE: _ClassVar[DebugCapturePoint]
    DBG_CAPTURE_PROXY_POST: _ClassVar[DebugCapturePoint]
    DBG_CAPTURE_SNAT_PRE: _ClassVar[DebugCapturePoint]
    DBG_CAPTURE_SNAT_POST: _ClassVar[DebugCapturePoint]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[EventType]
    EventSample: _ClassVar[EventType]
    RecordLost: _ClassVar[EventType]

class LostEventSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN_LOST_EVENT_SOURCE: _ClassVar[LostEventSource]
    PERF_EVENT_RING_BUFFER: _ClassVar[LostEventSource]
    OBSERVER_EVENTS_QUEUE: _ClassVar[LostEventSource]
    HUBBLE_RING_BUFFER: _ClassVar[LostEventSource]

class AgentEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_EVENT_UNKNOWN: _ClassVar[AgentEventType]
    AGENT_STARTED: _ClassVar[AgentEventType]
    POLICY_UPDATED: _ClassVar[AgentEventType]
    POLICY_DELETED: _ClassVar[AgentEventType]
    ENDPOINT_REGENERATE_SUCCESS: _ClassVar[AgentEventType]
    ENDPOINT_REGENERATE_FAILURE: _ClassVar[AgentEventType]
    ENDPOINT_CREATED: _ClassVar[AgentEventType]
    ENDPOINT_DELETED: _ClassVar[AgentEventType]
    IPCACHE_UPSERTED: _ClassVar[AgentEventType]
    IPCACHE_DELETED: _ClassVar[AgentEventType]
    SERVICE_UPSERTED: _ClassVar[AgentEventType]
    SERVICE_DELETED: _ClassVar[AgentEventType]

class SocketTranslationPoint(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOCK_XLATE_POINT_UNKNOWN: _ClassVar[SocketTranslationPoint]
    SOCK_XLATE_POINT_PRE_DIRECTION_FWD: _ClassVar[SocketTranslationPoint]
    SOCK_XLATE_POINT_POST_DIRECTION_FWD: _ClassVar[SocketTranslationPoint]
    SOCK_XLATE_POINT_PRE_DIRECTION_REV: _ClassVar[SocketTranslationPoint]
    SOCK_XLATE_POINT_POST_DIRECTION_REV: _ClassVar[SocketTranslationPoint]

class DebugEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DBG_EVENT_UNKNOWN: _ClassVar[DebugEventType]
    DBG_GENERIC: _ClassVar[DebugEventType]
UNKNOWN_TYPE: FlowType
L3_L4: FlowType
L7: FlowType
SOCK: FlowType
DISABLED: AuthType
SPIRE: AuthType
TEST_ALWAYS_FAIL: AuthType
UNKNOWN_POINT: TraceObservationPoint
TO_PROXY: TraceObservationPoint
TO_HOST: TraceObservationPoint
TO_STACK: TraceObservationPoint
TO_OVERLAY: TraceObservationPoint
TO_ENDPOINT: TraceObservationPoint
FROM_ENDPOINT: TraceObservationPoint
FROM_PROXY: TraceObservationPoint
FROM_HOST: TraceObservationPoint
FROM_STACK: TraceObservationPoint
FROM_OVERLAY: TraceObservationPoint
FROM_NETWORK: TraceObservationPoint
TO_NETWORK: TraceObservationPoint
FROM_CRYPTO: TraceObservationPoint
TO_CRYPTO: TraceObservationPoint
TRACE_REASON_UNKNOWN: TraceReason
NEW: TraceReason
ESTABLISHED: TraceReason
REPLY: TraceReason
RELATED: TraceReason
REOPENED: TraceReason
SRV6_ENCAP: TraceReason
SRV6_DECAP: TraceReason
ENCRYPT_OVERLAY: TraceReason
UNKNOWN_L7_TYPE: L7FlowType
REQUEST: L7FlowType
RESPONSE: L7FlowType
SAMPLE: L7FlowType
IP_NOT_USED: IPVersion
IPv4: IPVersion
IPv6: IPVersion
VERDICT_UNKNOWN: Verdict
FORWARDED: Verdict
DROPPED: Verdict
ERROR: Verdict
AUDIT: Verdict
REDIRECTED: Verdict
TRACED: Verdict
TRANSLATED: Verdict
DROP_REASON_UNKNOWN: DropReason
INVALID_SOURCE_MAC: DropReason
INVALID_DESTINATION_MAC: DropReason
INVALID_SOURCE_IP: DropReason
POLICY_DENIED: DropReason
INVALID_PACKET_DROPPED: DropReason
CT_TRUNCATED_OR_INVALID_HEADER: DropReason
CT_MISSING_TCP_ACK_FLAG: DropReason
CT_UNKNOWN_L4_PROTOCOL: DropReason
CT_CANNOT_CREATE_ENTRY_FROM_PACKET: DropReason
UNSUPPORTED_L3_PROTOCOL: DropReason
MISSED_TAIL_CALL: DropReason
ERROR_WRITING_TO_PACKET: DropReason
UNKNOWN_L4_PROTOCOL: DropReason
UNKNOWN_ICMPV4_CODE: DropReason
UNKNOWN_ICMPV4_TYPE: DropReason
UNKNOWN_ICMPV6_CODE: DropReason
UNKNOWN_ICMPV6_TYPE: DropReason
ERROR_RETRIEVING_TUNNEL_KEY: DropReason
ERROR_RETRIEVING_TUNNEL_OPTIONS: DropReason
INVALID_GENEVE_OPTION: DropReason
UNKNOWN_L3_TARGET_ADDRESS: DropReason
STALE_OR_UNROUTABLE_IP: DropReason
NO_MATCHING_LOCAL_CONTAINER_FOUND: DropReason
ERROR_WHILE_CORRECTING_L3_CHECKSUM: DropReason
ERROR_WHILE_CORRECTING_L4_CHECKSUM: DropReason
CT_MAP_INSERTION_FAILED: DropReason
INVALID_IPV6_EXTENSION_HEADER: DropReason
IP_FRAGMENTATION_NOT_SUPPORTED: DropReason
SERVICE_BACKEND_NOT_FOUND: DropReason
NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT: DropReason
FAILED_TO_INSERT_INTO_PROXYMAP: DropReason
REACHED_EDT_RATE_LIMITING_DROP_HORIZON: DropReason
UNKNOWN_CONNECTION_TRACKING_STATE: DropReason
LOCAL_HOST_IS_UNREACHABLE: DropReason
NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION: DropReason
UNSUPPORTED_L2_PROTOCOL: DropReason
NO_MAPPING_FOR_NAT_MASQUERADE: DropReason
UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE: DropReason
FIB_LOOKUP_FAILED: DropReason
ENCAPSULATION_TRAFFIC_IS_PROHIBITED: DropReason
INVALID_IDENTITY: DropReason
UNKNOWN_SENDER: DropReason
NAT_NOT_NEEDED: DropReason
IS_A_CLUSTERIP: DropReason
FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND: DropReason
FORBIDDEN_ICMPV6_MESSAGE: DropReason
DENIED_BY_LB_SRC_RANGE_CHECK: DropReason
SOCKET_LOOKUP_FAILED: DropReason
SOCKET_ASSIGN_FAILED: DropReason
PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL: DropReason
POLICY_DENY: DropReason
VLAN_FILTERED: DropReason
INVALID_VNI: DropReason
INVALID_TC_BUFFER: DropReason
NO_SID: DropReason
MISSING_SRV6_STATE: DropReason
NAT46: DropReason
NAT64: DropReason
AUTH_REQUIRED: DropReason
CT_NO_MAP_FOUND: DropReason
SNAT_NO_MAP_FOUND: DropReason
INVALID_CLUSTER_ID: DropReason
UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP: DropReason
NO_EGRESS_GATEWAY: DropReason
UNENCRYPTED_TRAFFIC: DropReason
TTL_EXCEEDED: DropReason
NO_NODE_ID: DropReason
DROP_RATE_LIMITED: DropReason
IGMP_HANDLED: DropReason
IGMP_SUBSCRIBED: DropReason
MULTICAST_HANDLED: DropReason
DROP_HOST_NOT_READY: DropReason
DROP_EP_NOT_READY: DropReason
DROP_NO_EGRESS_IP: DropReason
DROP_PUNT_PROXY: DropReason
TRAFFIC_DIRECTION_UNKNOWN: TrafficDirection
INGRESS: TrafficDirection
EGRESS: TrafficDirection
DBG_CAPTURE_POINT_UNKNOWN: DebugCapturePoint
DBG_CAPTURE_DELIVERY: DebugCapturePoint
DBG_CAPTURE_FROM_LB: DebugCapturePoint
DBG_CAPTURE_AFTER_V46: DebugCapturePoint
DBG_CAPTURE_AFTER_V64: DebugCapturePoint
DBG_CAPTURE_PROXY_PRE: DebugCapturePoint
DBG_CAPTURE_PROXY_POST: DebugCapturePoint
DBG_CAPTURE_SNAT_PRE: DebugCapturePoint
DBG_CAPTURE_SNAT_POST: DebugCapturePoint
UNKNOWN: EventType
EventSample: EventType
RecordLost: EventType
UNKNOWN_LOST_EVENT_SOURCE: LostEventSource
PERF_EVENT_RING_BUFFER: LostEventSource
OBSERVER_EVENTS_QUEUE: LostEventSource
HUBBLE_RING_BUFFER: LostEventSource
AGENT_EVENT_UNKNOWN: AgentEventType
AGENT_STARTED: AgentEventType
POLICY_UPDATED: AgentEventType
POLICY_DELETED: AgentEventType
ENDPOINT_REGENERATE_SUCCESS: AgentEventType
ENDPOINT_REGENERATE_FAILURE: AgentEventType
ENDPOINT_CREATED: AgentEventType
ENDPOINT_DELETED: AgentEventType
IPCACHE_UPSERTED: AgentEventType
IPCACHE_DELETED: AgentEventType
SERVICE_UPSERTED: AgentEventType
SERVICE_DELETED: AgentEventType
SOCK_XLATE_POINT_UNKNOWN: SocketTranslationPoint
SOCK_XLATE_POINT_PRE_DIRECTION_FWD: SocketTranslationPoint
SOCK_XLATE_POINT_POST_DIRECTION_FWD: SocketTranslationPoint
SOCK_XLATE_POINT_PRE_DIRECTION_REV: SocketTranslationPoint
SOCK_XLATE_POINT_POST_DIRECTION_REV: SocketTranslationPoint
DBG_EVENT_UNKNOWN: DebugEventType
DBG_GENERIC: DebugEventType

class Flow(_message.Message):
    __slots__ = ("time", "uuid", "emitter", "verdict", "drop_reason", "auth_type", "ethernet", "IP", "l4", "source", "destination", "Type", "node_name", "node_labels", "source_names", "destination_names", "l7", "reply", "event_type", "source_service", "destination_service", "traffic_direction", "policy_match_type", "trace_observation_point", "trace_reason", "drop_reason_desc", "is_reply", "debug_capture_point", "interface", "proxy_port", "trace_context", "sock_xlate_point", "socket_cookie", "cgroup_id", "Summary", "egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by", "policy_log")
    TIME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    EMITTER_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DROP_REASON_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    ETHERNET_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    L4_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_LABELS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NAMES_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_NAMES_FIELD_NUMBER: _ClassVar[int]
    L7_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_SERVICE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    POLICY_MATCH_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRACE_OBSERVATION_POINT_FIELD_NUMBER: _ClassVar[int]
    TRACE_REASON_FIELD_NUMBER: _ClassVar[int]
    DROP_REASON_DESC_FIELD_NUMBER: _ClassVar[int]
    IS_REPLY_FIELD_NUMBER: _ClassVar[int]
    DEBUG_CAPTURE_POINT_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    PROXY_PORT_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SOCK_XLATE_POINT_FIELD_NUMBER: _ClassVar[int]
    SOCKET_COOKIE_FIELD_NUMBER: _ClassVar[int]
    CGROUP_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    EGRESS_ALLOWED_BY_FIELD_NUMBER: _ClassVar[int]
    INGRESS_ALLOWED_BY_FIELD_NUMBER: _ClassVar[int]
    EGRESS_DENIED_BY_FIELD_NUMBER: _ClassVar[int]
    INGRESS_DENIED_BY_FIELD_NUMBER: _ClassVar[int]
    POLICY_LOG_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    uuid: str
    emitter: Emitter
    verdict: Verdict
    drop_reason: int
    auth_type: AuthType
    ethernet: Ethernet
    IP: IP
    l4: Layer4
    source: Endpoint
    destination: Endpoint
    Type: FlowType
    node_name: str
    node_labels: _containers.RepeatedScalarFieldContainer[str]
    source_names: _containers.RepeatedScalarFieldContainer[str]
    destination_names: _containers.RepeatedScalarFieldContainer[str]
    l7: Layer7
    reply: bool
    event_type: CiliumEventType
    source_service: Service
    destination_service: Service
    traffic_direction: TrafficDirection
    policy_match_type: int
    trace_observation_point: TraceObservationPoint
    trace_reason: TraceReason
    drop_reason_desc: DropReason
    is_reply: _wrappers_pb2.BoolValue
    debug_capture_point: DebugCapturePoint
    interface: NetworkInterface
    proxy_port: int
    trace_context: TraceContext
    sock_xlate_point: SocketTranslationPoint
    socket_cookie: int
    cgroup_id: int
    Summary: str
    egress_allowed_by: _containers.RepeatedCompositeFieldContainer[Policy]
    ingress_allowed_by: _containers.RepeatedCompositeFieldContainer[Policy]
    egress_denied_by: _containers.RepeatedCompositeFieldContainer[Policy]
    ingress_denied_by: _containers.RepeatedCompositeFieldContainer[Policy]
    policy_log: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uuid: _Optional[str] = ..., emitter: _Optional[_Union[Emitter, _Mapping]] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., drop_reason: _Optional[int] = ..., auth_type: _Optional[_Union[AuthType, str]] = ..., ethernet: _Optional[_Union[Ethernet, _Mapping]] = ..., IP: _Optional[_Union[IP, _Mapping]] = ..., l4: _Optional[_Union[Layer4, _Mapping]] = ..., source: _Optional[_Union[Endpoint, _Mapping]] = ..., destination: _Optional[_Union[Endpoint, _Mapping]] = ..., Type: _Optional[_Union[FlowType, str]] = ..., node_name: _Optional[str] = ..., node_labels: _Optional[_Iterable[str]] = ..., source_names: _Optional[_Iterable[str]] = ..., destination_names: _Optional[_Iterable[str]] = ..., l7: _Optional[_Union[Layer7, _Mapping]] = ..., reply: _Optional[bool] = ..., event_type: _Optional[_Union[CiliumEventType, _Mapping]] = ..., source_service: _Optional[_Union[Service, _Mapping]] = ..., destination_service: _Optional[_Union[Service, _Mapping]] = ..., traffic_direction: _Optional[_Union[TrafficDirection, str]] = ..., policy_match_type: _Optional[int] = ..., trace_observation_point: _Optional[_Union[TraceObservationPoint, str]] = ..., trace_reason: _Optional[_Union[TraceReason, str]] = ..., drop_reason_desc: _Optional[_Union[DropReason, str]] = ..., is_reply: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ..., debug_capture_point: _Optional[_Union[DebugCapturePoint, str]] = ..., interface: _Optional[_Union[NetworkInterface, _Mapping]] = ..., proxy_port: _Optional[int] = ..., trace_context: _Optional[_Union[TraceContext, _Mapping]] = ..., sock_xlate_point: _Optional[_Union[SocketTranslationPoint, str]] = ..., socket_cookie: _Optional[int] = ..., cgroup_id: _Optional[int] = ..., Summary: _Optional[str] = ..., egress_allowed_by: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., ingress_allowed_by: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., egress_denied_by: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., ingress_denied_by: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., policy_log: _Optional[_Iterable[str]] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("name", "namespace", "labels", "revision", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    revision: int
    kind: str
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., revision: _Optional[int] = ..., kind: _Optional[str] = ...) -> None: ...

class Emitter(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class Layer4(_message.Message):
    __slots__ = ("TCP", "UDP", "ICMPv4", "ICMPv6", "SCTP")
    TCP_FIELD_NUMBER: _ClassVar[int]
    UDP_FIELD_NUMBER: _ClassVar[int]
    ICMPV4_FIELD_NUMBER: _ClassVar[int]
    ICMPV6_FIELD_NUMBER: _ClassVar[int]
    SCTP_FIELD_NUMBER: _ClassVar[int]
    TCP: TCP
    UDP: UDP
    ICMPv4: ICMPv4
    ICMPv6: ICMPv6
    SCTP: SCTP
    def __init__(self, TCP: _Optional[_Union[TCP, _Mapping]] = ..., UDP: _Optional[_Union[UDP, _Mapping]] = ..., ICMPv4: _Optional[_Union[ICMPv4, _Mapping]] = ..., ICMPv6: _Optional[_Union[ICMPv6, _Mapping]] = ..., SCTP: _Optional[_Union[SCTP, _Mapping]] = ...) -> None: ...

class Layer7(_message.Message):
    __slots__ = ("type", "latency_ns", "dns", "http", "kafka")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    KAFKA_FIELD_NUMBER: _ClassVar[int]
    type: L7FlowType
    latency_ns: int
    dns: DNS
    http: HTTP
    kafka: Kafka
    def __init__(self, type: _Optional[_Union[L7FlowType, str]] = ..., latency_ns: _Optional[int] = ..., dns: _Optional[_Union[DNS, _Mapping]] = ..., http: _Optional[_Union[HTTP, _Mapping]] = ..., kafka: _Optional[_Union[Kafka, _Mapping]] = ...) -> None: ...

class TraceContext(_message.Message):
    __slots__ = ("parent",)
    PARENT_FIELD_NUMBER: _ClassVar[int]
    parent: TraceParent
    def __init__(self, parent: _Optional[_Union[TraceParent, _Mapping]] = ...) -> None: ...

class TraceParent(_message.Message):
    __slots__ = ("trace_id",)
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    def __init__(self, trace_id: _Optional[str] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("ID", "identity", "cluster_name", "namespace", "labels", "pod_name", "workloads")
    ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    ID: int
    identity: int
    cluster_name: str
    namespace: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    pod_name: str
    workloads: _containers.RepeatedCompositeFieldContainer[Workload]
    def __init__(self, ID: _Optional[int] = ..., identity: _Optional[int] = ..., cluster_name: _Optional[str] = ..., namespace: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., pod_name: _Optional[str] = ..., workloads: _Optional[_Iterable[_Union[Workload, _Mapping]]] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("name", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class TCP(_message.Message):
    __slots__ = ("source_port", "destination_port", "flags")
    SOURCE_PORT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PORT_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    source_port: int
    destination_port: int
    flags: TCPFlags
    def __init__(self, source_port: _Optional[int] = ..., destination_port: _Optional[int] = ..., flags: _Optional[_Union[TCPFlags, _Mapping]] = ...) -> None: ...

class IP(_message.Message):
    __slots__ = ("source", "source_xlated", "destination", "ipVersion", "encrypted")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_XLATED_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    IPVERSION_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_FIELD_NUMBER: _ClassVar[int]
    source: str
    source_xlated: str
    destination: str
    ipVersion: IPVersion
    encrypted: bool
    def __init__(self, source: _Optional[str] = ..., source_xlated: _Optional[str] = ..., destination: _Optional[str] = ..., ipVersion: _Optional[_Union[IPVersion, str]] = ..., encrypted: _Optional[bool] = ...) -> None: ...

class Ethernet(_message.Message):
    __slots__ = ("source", "destination")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    source: str
    destination: str
    def __init__(self, source: _Optional[str] = ..., destination: _Optional[str] = ...) -> None: ...

class TCPFlags(_message.Message):
    __slots__ = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")
    FIN_FIELD_NUMBER: _ClassVar[int]
    SYN_FIELD_NUMBER: _ClassVar[int]
    RST_FIELD_NUMBER: _ClassVar[int]
    PSH_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    URG_FIELD_NUMBER: _ClassVar[int]
    ECE_FIELD_NUMBER: _ClassVar[int]
    CWR_FIELD_NUMBER: _ClassVar[int]
    NS_FIELD_NUMBER: _ClassVar[int]
    FIN: bool
    SYN: bool
    RST: bool
    PSH: bool
    ACK: bool
    URG: bool
    ECE: bool
    CWR: bool
    NS: bool
    def __init__(self, FIN: _Optional[bool] = ..., SYN: _Optional[bool] = ..., RST: _Optional[bool] = ..., PSH: _Optional[bool] = ..., ACK: _Optional[bool] = ..., URG: _Optional[bool] = ..., ECE: _Optional[bool] = ..., CWR: _Optional[bool] = ..., NS: _Optional[bool] = ...) -> None: ...

class UDP(_message.Message):
    __slots__ = ("source_port", "destination_port")
    SOURCE_PORT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PORT_FIELD_NUMBER: _ClassVar[int]
    source_port: int
    destination_port: int
    def __init__(self, source_port: _Optional[int] = ..., destination_port: _Optional[int] = ...) -> None: ...

class SCTP(_message.Message):
    __slots__ = ("source_port", "destination_port")
    SOURCE_PORT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PORT_FIELD_NUMBER: _ClassVar[int]
    source_port: int
    destination_port: int
    def __init__(self, source_port: _Optional[int] = ..., destination_port: _Optional[int] = ...) -> None: ...

class ICMPv4(_message.Message):
    __slots__ = ("type", "code")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    type: int
    code: int
    def __init__(self, type: _Optional[int] = ..., code: _Optional[int] = ...) -> None: ...

class ICMPv6(_message.Message):
    __slots__ = ("type", "code")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    type: int
    code: int
    def __init__(self, type: _Optional[int] = ..., code: _Optional[int] = ...) -> None: ...

class EventTypeFilter(_message.Message):
    __slots__ = ("type", "match_sub_type", "sub_type")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MATCH_SUB_TYPE_FIELD_NUMBER: _ClassVar[int]
    SUB_TYPE_FIELD_NUMBER: _ClassVar[int]
    type: int
    match_sub_type: bool
    sub_type: int
    def __init__(self, type: _Optional[int] = ..., match_sub_type: _Optional[bool] = ..., sub_type: _Optional[int] = ...) -> None: ...

class CiliumEventType(_message.Message):
    __slots__ = ("type", "sub_type")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUB_TYPE_FIELD_NUMBER: _ClassVar[int]
    type: int
    sub_type: int
    def __init__(self, type: _Optional[int] = ..., sub_type: _Optional[int] = ...) -> None: ...

class FlowFilter(_message.Message):
    __slots__ = ("uuid", "source_ip", "source_ip_xlated", "source_pod", "source_fqdn", "source_label", "source_service", "source_workload", "source_cluster_name", "destination_ip", "destination_pod", "destination_fqdn", "destination_label", "destination_service", "destination_workload", "destination_cluster_name", "traffic_direction", "verdict", "drop_reason_desc", "interface", "event_type", "http_status_code", "protocol", "source_port", "destination_port", "reply", "dns_query", "source_identity", "destination_identity", "http_method", "http_path", "http_url", "http_header", "tcp_flags", "node_name", "node_labels", "ip_version", "trace_id", "encrypted", "experimental")
    class Experimental(_message.Message):
        __slots__ = ("cel_expression",)
        CEL_EXPRESSION_FIELD_NUMBER: _ClassVar[int]
        cel_expression: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, cel_expression: _Optional[_Iterable[str]] = ...) -> None: ...
    UUID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IP_XLATED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_POD_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FQDN_FIELD_NUMBER: _ClassVar[int]
    SOURCE_LABEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_IP_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_POD_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FQDN_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_LABEL_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_SERVICE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DROP_REASON_DESC_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PORT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PORT_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    DNS_QUERY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHOD_FIELD_NUMBER: _ClassVar[int]
    HTTP_PATH_FIELD_NUMBER: _ClassVar[int]
    HTTP_URL_FIELD_NUMBER: _ClassVar[int]
    HTTP_HEADER_FIELD_NUMBER: _ClassVar[int]
    TCP_FLAGS_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_LABELS_FIELD_NUMBER: _ClassVar[int]
    IP_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENTAL_FIELD_NUMBER: _ClassVar[int]
    uuid: _containers.RepeatedScalarFieldContainer[str]
    source_ip: _containers.RepeatedScalarFieldContainer[str]
    source_ip_xlated: _containers.RepeatedScalarFieldContainer[str]
    source_pod: _containers.RepeatedScalarFieldContainer[str]
    source_fqdn: _containers.RepeatedScalarFieldContainer[str]
    source_label: _containers.RepeatedScalarFieldContainer[str]
    source_service: _containers.RepeatedScalarFieldContainer[str]
    source_workload: _containers.RepeatedCompositeFieldContainer[Workload]
    source_cluster_name: _containers.RepeatedScalarFieldContainer[str]
    destination_ip: _containers.RepeatedScalarFieldContainer[str]
    destination_pod: _containers.RepeatedScalarFieldContainer[str]
    destination_fqdn: _containers.RepeatedScalarFieldContainer[str]
    destination_label: _containers.RepeatedScalarFieldContainer[str]
    destination_service: _containers.RepeatedScalarFieldContainer[str]
    destination_workload: _containers.RepeatedCompositeFieldContainer[Workload]
    destination_cluster_name: _containers.RepeatedScalarFieldContainer[str]
    traffic_direction: _containers.RepeatedScalarFieldContainer[TrafficDirection]
    verdict: _containers.RepeatedScalarFieldContainer[Verdict]
    drop_reason_desc: _containers.RepeatedScalarFieldContainer[DropReason]
    interface: _containers.RepeatedCompositeFieldContainer[NetworkInterface]
    event_type: _containers.RepeatedCompositeFieldContainer[EventTypeFilter]
    http_status_code: _containers.RepeatedScalarFieldContainer[str]
    protocol: _containers.RepeatedScalarFieldContainer[str]
    source_port: _containers.RepeatedScalarFieldContainer[str]
    destination_port: _containers.RepeatedScalarFieldContainer[str]
    reply: _containers.RepeatedScalarFieldContainer[bool]
    dns_query: _containers.RepeatedScalarFieldContainer[str]
    source_identity: _containers.RepeatedScalarFieldContainer[int]
    destination_identity: _containers.RepeatedScalarFieldContainer[int]
    http_method: _containers.RepeatedScalarFieldContainer[str]
    http_path: _containers.RepeatedScalarFieldContainer[str]
    http_url: _containers.RepeatedScalarFieldContainer[str]
    http_header: _containers.RepeatedCompositeFieldContainer[HTTPHeader]
    tcp_flags: _containers.RepeatedCompositeFieldContainer[TCPFlags]
    node_name: _containers.RepeatedScalarFieldContainer[str]
    node_labels: _containers.RepeatedScalarFieldContainer[str]
    ip_version: _containers.RepeatedScalarFieldContainer[IPVersion]
    trace_id: _containers.RepeatedScalarFieldContainer[str]
    encrypted: _containers.RepeatedScalarFieldContainer[bool]
    experimental: FlowFilter.Experimental
    def __init__(self, uuid: _Optional[_Iterable[str]] = ..., source_ip: _Optional[_Iterable[str]] = ..., source_ip_xlated: _Optional[_Iterable[str]] = ..., source_pod: _Optional[_Iterable[str]] = ..., source_fqdn: _Optional[_Iterable[str]] = ..., source_label: _Optional[_Iterable[str]] = ..., source_service: _Optional[_Iterable[str]] = ..., source_workload: _Optional[_Iterable[_Union[Workload, _Mapping]]] = ..., source_cluster_name: _Optional[_Iterable[str]] = ..., destination_ip: _Optional[_Iterable[str]] = ..., destination_pod: _Optional[_Iterable[str]] = ..., destination_fqdn: _Optional[_Iterable[str]] = ..., destination_label: _Optional[_Iterable[str]] = ..., destination_service: _Optional[_Iterable[str]] = ..., destination_workload: _Optional[_Iterable[_Union[Workload, _Mapping]]] = ..., destination_cluster_name: _Optional[_Iterable[str]] = ..., traffic_direction: _Optional[_Iterable[_Union[TrafficDirection, str]]] = ..., verdict: _Optional[_Iterable[_Union[Verdict, str]]] = ..., drop_reason_desc: _Optional[_Iterable[_Union[DropReason, str]]] = ..., interface: _Optional[_Iterable[_Union[NetworkInterface, _Mapping]]] = ..., event_type: _Optional[_Iterable[_Union[EventTypeFilter, _Mapping]]] = ..., http_status_code: _Optional[_Iterable[str]] = ..., protocol: _Optional[_Iterable[str]] = ..., source_port: _Optional[_Iterable[str]] = ..., destination_port: _Optional[_Iterable[str]] = ..., reply: _Optional[_Iterable[bool]] = ..., dns_query: _Optional[_Iterable[str]] = ..., source_identity: _Optional[_Iterable[int]] = ..., destination_identity: _Optional[_Iterable[int]] = ..., http_method: _Optional[_Iterable[str]] = ..., http_path: _Optional[_Iterable[str]] = ..., http_url: _Optional[_Iterable[str]] = ..., http_header: _Optional[_Iterable[_Union[HTTPHeader, _Mapping]]] = ..., tcp_flags: _Optional[_Iterable[_Union[TCPFlags, _Mapping]]] = ..., node_name: _Optional[_Iterable[str]] = ..., node_labels: _Optional[_Iterable[str]] = ..., ip_version: _Optional[_Iterable[_Union[IPVersion, str]]] = ..., trace_id: _Optional[_Iterable[str]] = ..., encrypted: _Optional[_Iterable[bool]] = ..., experimental: _Optional[_Union[FlowFilter.Experimental, _Mapping]] = ...) -> None: ...

class DNS(_message.Message):
    __slots__ = ("query", "ips", "ttl", "cnames", "observation_source", "rcode", "qtypes", "rrtypes")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    IPS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    CNAMES_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    RCODE_FIELD_NUMBER: _ClassVar[int]
    QTYPES_FIELD_NUMBER: _ClassVar[int]
    RRTYPES_FIELD_NUMBER: _ClassVar[int]
    query: str
    ips: _containers.RepeatedScalarFieldContainer[str]
    ttl: int
    cnames: _containers.RepeatedScalarFieldContainer[str]
    observation_source: str
    rcode: int
    qtypes: _containers.RepeatedScalarFieldContainer[str]
    rrtypes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, query: _Optional[str] = ..., ips: _Optional[_Iterable[str]] = ..., ttl: _Optional[int] = ..., cnames: _Optional[_Iterable[str]] = ..., observation_source: _Optional[str] = ..., rcode: _Optional[int] = ..., qtypes: _Optional[_Iterable[str]] = ..., rrtypes: _Optional[_Iterable[str]] = ...) -> None: ...

class HTTPHeader(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class HTTP(_message.Message):
    __slots__ = ("code", "method", "url", "protocol", "headers")
    CODE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    code: int
    method: str
    url: str
    protocol: str
    headers: _containers.RepeatedCompositeFieldContainer[HTTPHeader]
    def __init__(self, code: _Optional[int] = ..., method: _Optional[str] = ..., url: _Optional[str] = ..., protocol: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[HTTPHeader, _Mapping]]] = ...) -> None: ...

class Kafka(_message.Message):
    __slots__ = ("error_code", "api_version", "api_key", "correlation_id", "topic")
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    error_code: int
    api_version: int
    api_key: str
    correlation_id: int
    topic: str
    def __init__(self, error_code: _Optional[int] = ..., api_version: _Optional[int] = ..., api_key: _Optional[str] = ..., correlation_id: _Optional[int] = ..., topic: _Optional[str] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("name", "namespace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class LostEvent(_message.Message):
    __slots__ = ("source", "num_events_lost", "cpu")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NUM_EVENTS_LOST_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    source: LostEventSource
    num_events_lost: int
    cpu: _wrappers_pb2.Int32Value
    def __init__(self, source: _Optional[_Union[LostEventSource, str]] = ..., num_events_lost: _Optional[int] = ..., cpu: _Optional[_Union[_wrappers_pb2.Int32Value, _Mapping]] = ...) -> None: ...

class AgentEvent(_message.Message):
    __slots__ = ("type", "unknown", "agent_start", "policy_update", "endpoint_regenerate", "endpoint_update", "ipcache_update", "service_upsert", "service_delete")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    AGENT_START_FIELD_NUMBER: _ClassVar[int]
    POLICY_UPDATE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_REGENERATE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_UPDATE_FIELD_NUMBER: _ClassVar[int]
    IPCACHE_UPDATE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_UPSERT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_DELETE_FIELD_NUMBER: _ClassVar[int]
    type: AgentEventType
    unknown: AgentEventUnknown
    agent_start: TimeNotification
    policy_update: PolicyUpdateNotification
    endpoint_regenerate: EndpointRegenNotification
    endpoint_update: EndpointUpdateNotification
    ipcache_update: IPCacheNotification
    service_upsert: ServiceUpsertNotification
    service_delete: ServiceDeleteNotification
    def __init__(self, type: _Optional[_Union[AgentEventType, str]] = ..., unknown: _Optional[_Union[AgentEventUnknown, _Mapping]] = ..., agent_start: _Optional[_Union[TimeNotification, _Mapping]] = ..., policy_update: _Optional[_Union[PolicyUpdateNotification, _Mapping]] = ..., endpoint_regenerate: _Optional[_Union[EndpointRegenNotification, _Mapping]] = ..., endpoint_update: _Optional[_Union[EndpointUpdateNotification, _Mapping]] = ..., ipcache_update: _Optional[_Union[IPCacheNotification, _Mapping]] = ..., service_upsert: _Optional[_Union[ServiceUpsertNotification, _Mapping]] = ..., service_delete: _Optional[_Union[ServiceDeleteNotification, _Mapping]] = ...) -> None: ...

class PolicyUpdateNotification(_message.Message):
    __slots__ = ("labels", "revision", "rule_count")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    RULE_COUNT_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[str]
    revision: int
    rule_count: int
    def __init__(self, labels: _Optional[_Iterable[str]] = ..., revision: _Optional[int] = ..., rule_count: _Optional[int] = ...) -> None: ...

class EndpointRegenNotification(_message.Message):
    __slots__ = ("id", "labels", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    error: str
    def __init__(self, id: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ...) -> None: ...

class EndpointUpdateNotification(_message.Message):
    __slots__ = ("id", "labels", "error", "pod_name", "namespace")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    id: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    error: str
    pod_name: str
    namespace: str
    def __init__(self, id: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ..., pod_name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class IPCacheNotification(_message.Message):
    __slots__ = ("cidr", "identity", "old_identity", "host_ip", "old_host_ip", "encrypt_key", "namespace", "pod_name")
    CIDR_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    OLD_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    OLD_HOST_IP_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_KEY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    cidr: str
    identity: int
    old_identity: _wrappers_pb2.UInt32Value
    host_ip: str
    old_host_ip: str
    encrypt_key: int
    namespace: str
    pod_name: str
    def __init__(self, cidr: _Optional[str] = ..., identity: _Optional[int] = ..., old_identity: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., host_ip: _Optional[str] = ..., old_host_ip: _Optional[str] = ..., encrypt_key: _Optional[int] = ..., namespace: _Optional[str] = ..., pod_name: _Optional[str] = ...) -> None: ...

class ServiceUpsertNotificationAddr(_message.Message):
    __slots__ = ("ip", "port")
    IP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    ip: str
    port: int
    def __init__(self, ip: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class ServiceUpsertNotification(_message.Message):
    __slots__ = ("id", "frontend_address", "backend_addresses", "type", "name", "namespace", "ext_traffic_policy", "int_traffic_policy")
    ID_FIELD_NUMBER: _ClassVar[int]
    FRONTEND_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    EXT_TRAFFIC_POLICY_FIELD_NUMBER: _ClassVar[int]
    INT_TRAFFIC_POLICY_FIELD_NUMBER: _ClassVar[int]
    id: int
    frontend_address: ServiceUpsertNotificationAddr
    backend_addresses: _containers.RepeatedCompositeFieldContainer[ServiceUpsertNotificationAddr]
    type: str
    name: str
    namespace: str
    ext_traffic_policy: str
    int_traffic_policy: str
    def __init__(self, id: _Optional[int] = ..., frontend_address: _Optional[_Union[ServiceUpsertNotificationAddr, _Mapping]] = ..., backend_addresses: _Optional[_Iterable[_Union[ServiceUpsertNotificationAddr, _Mapping]]] = ..., type: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., ext_traffic_policy: _Optional[str] = ..., int_traffic_policy: _Optional[str] = ...) -> None: ...

class ServiceDeleteNotification(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class AgentEventUnknown(_message.Message):
    __slots__ = ("type", "notification")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    type: str
    notification: str
    def __init__(self, type: _Optional[str] = ..., notification: _Optional[str] = ...) -> None: ...

class TimeNotification(_message.Message):
    __slots__ = ("time",)
    TIME_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class NetworkInterface(_message.Message):
    __slots__ = ("index", "name")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class DebugEvent(_message.Message):
    __slots__ = ("type", "source", "hash", "arg1", "arg2", "arg3", "message", "cpu")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    ARG1_FIELD_NUMBER: _ClassVar[int]
    ARG2_FIELD_NUMBER: _ClassVar[int]
    ARG3_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    type: DebugEventType
    source: Endpoint
    hash: _wrappers_pb2.UInt32Value
    arg1: _wrappers_pb2.UInt32Value
    arg2: _wrappers_pb2.UInt32Value
    arg3: _wrappers_pb2.UInt32Value
    message: str
    cpu: _wrappers_pb2.Int32Value
    def __init__(self, type: _Optional[_Union[DebugEventType, str]] = ..., source: _Optional[_Union[Endpoint, _Mapping]] = ..., hash: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., arg1: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., arg2: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., arg3: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., message: _Optional[str] = ..., cpu: _Optional[_Union[_wrappers_pb2.Int32Value, _Mapping]] = ...) -> None: ...
