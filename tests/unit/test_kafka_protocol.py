"""Kafka request parsing, rule matching and the error-29 responses, checked against kafka-python's own
codec (its message classes come from Apache Kafka's schemas; nobody here wrote them): every version of
every topic-carrying API key that membrane.kafka reads is encoded by kafka-python, parsed here, answered
here, and the answer decoded by kafka-python. Plus a fuzz of the parser."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.protocol.consumer import (
    FetchRequest,
    FetchResponse,
    HeartbeatRequest,
    ListOffsetsRequest,
    ListOffsetsResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
)
from kafka.protocol.metadata import ApiVersionsRequest, MetadataRequest, MetadataResponse
from kafka.protocol.producer import ProduceRequest, ProduceResponse

from membrane.kafka.protocol import (
    MAX_FRAME,
    TOPIC_AUTHORIZATION_FAILED,
    TOPIC_VERSIONS,
    KafkaError,
    Request,
    TopicParts,
    parse_request,
    split_frames,
)
from membrane.kafka.responses import error_response
from membrane.kafka.rules import allowed, compile_rules, denied_topics

TOPICS = [("empire-announce", (0, 2)), ("deathstar-plans", (1,))]


def _produce(v: int) -> Any:
    T, P = ProduceRequest.TopicProduceData, ProduceRequest.TopicProduceData.PartitionProduceData
    return ProduceRequest[v](acks=1, timeout_ms=1000, topic_data=[
        T(name=n, partition_data=[P(index=p, records=b"\x00" * 7) for p in ps]) for n, ps in TOPICS])


def _fetch(v: int) -> Any:
    T = FetchRequest.FetchTopic
    return FetchRequest[v](topics=[T(topic=n, partitions=[T.FetchPartition(partition=p) for p in ps])
                                   for n, ps in TOPICS])


def _list_offsets(v: int) -> Any:
    T = ListOffsetsRequest.ListOffsetsTopic
    return ListOffsetsRequest[v](topics=[T(name=n, partitions=[T.ListOffsetsPartition(partition_index=p) for p in ps])
                                         for n, ps in TOPICS])


def _metadata(v: int) -> Any:
    return MetadataRequest[v](topics=[MetadataRequest.MetadataRequestTopic(name=n) for n, _ in TOPICS])


def _offset_commit(v: int) -> Any:
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    return OffsetCommitRequest[v](group_id="g", topics=[
        T(name=n, partitions=[T.OffsetCommitRequestPartition(partition_index=p, committed_offset=5) for p in ps])
        for n, ps in TOPICS])


def _offset_fetch(v: int) -> Any:
    T = OffsetFetchRequest.OffsetFetchRequestTopic
    return OffsetFetchRequest[v](group_id="g", topics=[T(name=n, partition_indexes=list(ps)) for n, ps in TOPICS])


CASES = {0: (_produce, ProduceResponse), 1: (_fetch, FetchResponse), 2: (_list_offsets, ListOffsetsResponse),
         3: (_metadata, MetadataResponse), 8: (_offset_commit, OffsetCommitResponse),
         9: (_offset_fetch, OffsetFetchResponse)}


def encode(msg: Any, correlation: int = 77, client: str = "kafka-python") -> bytes:
    msg.with_header(correlation_id=correlation, client_id=client)
    return bytes(msg.encode(header=True, framed=True))


def errors(decoded: Any) -> set[tuple[str, int, int]]:
    """(topic, partition or -1, error code) of every topic/partition entry of a decoded response."""
    out = set()
    d = decoded.to_dict()
    for t in d.get("responses") or d.get("topics") or []:
        name = t.get("name") or t.get("topic")
        parts = t.get("partition_responses") or t.get("partitions") or []
        if "error_code" in t and not parts:
            out.add((name, -1, t["error_code"]))
        for p in parts:
            out.add((name, p.get("index", p.get("partition_index", -1)), p["error_code"]))
    return out


ALL_VERSIONS = [(k, v) for k, top in TOPIC_VERSIONS.items() for v in range(top + 1)]


@pytest.mark.parametrize(("key", "version"), ALL_VERSIONS)
def test_topics_are_read_and_the_error_response_decodes_in_kafka_python(key, version):
    build, response = CASES[key]
    req = parse_request(encode(build(version)))
    assert (req.api_key, req.api_version, req.correlation_id, req.client_id) == (key, version, 77, "kafka-python")
    want_parts = key != 3  # Metadata names topics only
    assert req.topics == tuple(TopicParts(n, ps if want_parts else ()) for n, ps in TOPICS)
    frame = error_response(req)
    assert frame is not None and struct.unpack("!i", frame[:4])[0] == len(frame) - 4
    decoded = response[version].decode(frame, header=True, framed=True)
    assert decoded.header.correlation_id == 77
    expect = {(n, p, TOPIC_AUTHORIZATION_FAILED) for n, ps in TOPICS for p in ps} if want_parts else \
        {(n, -1, TOPIC_AUTHORIZATION_FAILED) for n, _ in TOPICS}
    assert errors(decoded) == expect


def test_requests_without_topics_and_metadata_for_every_topic():
    req = parse_request(encode(ApiVersionsRequest[3](client_software_name="kcat", client_software_version="1")))
    assert (req.api_name, req.topics, req.all_topics) == ("apiversions", (), False)
    assert error_response(req) is None  # not answerable with error 29: the proxy closes instead
    assert parse_request(encode(MetadataRequest[4](topics=None))).all_topics
    assert parse_request(encode(MetadataRequest[0](topics=[]))).all_topics
    assert parse_request(encode(HeartbeatRequest[4](group_id="g", generation_id=1, member_id="m"))).api_name == "heartbeat"


# ---- rules --------------------------------------------------------------------------------------------------------

EMPIRE = compile_rules([{"role": "produce", "topic": "empire-announce"},
                        {"role": "consume", "topic": "empire-announce", "clientID": "empire-hq"},
                        {"apiKey": "apiversions"}])


def req(key: int, topics: tuple[str, ...] = (), client: str = "kcat", version: int = 3) -> Request:
    return Request(key, version, 1, client, tuple(TopicParts(t) for t in topics))


def test_produce_role_allows_its_topic_only():
    assert allowed(EMPIRE, req(0, ("empire-announce",)))
    assert denied_topics(EMPIRE, req(0, ("empire-announce", "deathstar-plans"))) == ("deathstar-plans",)
    assert allowed(EMPIRE, req(3, ("empire-announce",)))  # metadata is part of the produce role
    assert not allowed(EMPIRE, req(3, ("deathstar-plans",)))
    assert allowed(EMPIRE, req(3))  # metadata for every topic names none: a matching item allows it
    assert allowed(EMPIRE, req(18))


def test_consume_role_needs_its_client_id():
    assert not allowed(EMPIRE, req(1, ("empire-announce",), client="rebel"))
    assert allowed(EMPIRE, req(1, ("empire-announce",), client="empire-hq"))
    assert allowed(EMPIRE, req(12, client="empire-hq"))  # heartbeat: consume role, no topics
    assert not allowed(EMPIRE, req(19, ("empire-announce",)))  # createtopics: no item has it


def test_api_version_and_empty_rules():
    rules = compile_rules([{"apiKey": "produce", "apiVersion": "3"}])
    assert allowed(rules, req(0, ("x",), version=3)) and not allowed(rules, req(0, ("x",), version=7))
    assert allowed(compile_rules([{}]), req(19, ("anything",)))  # an empty item allows every request
    assert not allowed(compile_rules([]), req(18))
    with pytest.raises(ValueError, match="unknown Kafka apiKey"):
        compile_rules([{"apiKey": "nope"}])


# ---- framing and fuzz ---------------------------------------------------------------------------------------------

def test_frames_split_anywhere_and_oversized_ones_are_refused():
    stream = encode(_produce(3)) + encode(_metadata(1))
    for cut in range(len(stream) + 1):
        a, rest = split_frames(stream[:cut])
        b, tail = split_frames(rest + stream[cut:])
        assert [parse_request(f).api_key for f in a + b] == [0, 3] and tail == b""
    with pytest.raises(KafkaError, match="refused"):
        split_frames(struct.pack("!i", MAX_FRAME + 1))
    with pytest.raises(KafkaError, match="refused"):
        split_frames(struct.pack("!i", -5))


@pytest.mark.parametrize(("frame", "reason"), [
    (b"\x00\x00", "truncated frame size"),
    (struct.pack("!i", 3) + b"\x00\x00\x00", "truncated int16"),
    (struct.pack("!ihhih", 10, 99, 0, 1, -1), "unknown api key 99"),
    (struct.pack("!ihhih", 10, 0, 12, 1, -1), "newer than the versions read here"),
    (struct.pack("!ihhih", 10, 0, 3, 1, -1), "truncated"),
    (struct.pack("!ihhih", 11, 0, 3, 1, -1), "frame says 11 bytes, has 10"),
])
def test_broken_frames_are_refused_with_a_reason(frame, reason):
    with pytest.raises(KafkaError, match=reason):
        parse_request(frame)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_is_refused_never_crashes(data):
    framed = struct.pack("!i", len(data)) + data
    for f in (data, framed):
        try:
            r = parse_request(f)
        except KafkaError:
            continue
        error_response(r)


def test_truncations_and_bit_flips_of_real_requests():
    rng = random.Random(29)
    seeds = [encode(build(v)) for key, (build, _r) in CASES.items() for v in (0, TOPIC_VERSIONS[key])]
    refused = tried = 0
    for s in seeds:
        for n in range(4, len(s)):
            cut = struct.pack("!i", n - 4) + s[4:n]
            tried += 1
            try:
                error_response(parse_request(cut))
            except KafkaError:
                refused += 1
        for _ in range(200):
            b = bytearray(s)
            for _ in range(rng.randint(1, 3)):
                b[rng.randrange(4, len(b))] = rng.randrange(256)
            try:
                error_response(parse_request(bytes(b)))
            except KafkaError:
                pass
    assert refused > tried // 2


@pytest.mark.parametrize("version", range(1, TOPIC_VERSIONS[3] + 1))
def test_a_denied_metadata_request_keeps_the_broker_list_with_the_topics_failing(version):
    from membrane.kafka.responses import metadata_without_topics, splice_denied_metadata
    req = parse_request(encode(_metadata(version)))
    ask = parse_request(metadata_without_topics(req))  # type: ignore[arg-type]
    assert (ask.api_version, ask.correlation_id, ask.topics, ask.all_topics) == (version, 77, (), False)
    B = MetadataResponse.MetadataResponseBroker
    broker = MetadataResponse[version](throttle_time_ms=0, brokers=[B(node_id=0, host="10.0.1.7", port=9092)],
                                       cluster_id="c", controller_id=0, topics=[])
    broker.with_header(correlation_id=77)
    spliced = splice_denied_metadata(req, bytes(broker.encode(header=True, framed=True)))
    decoded = MetadataResponse[version].decode(spliced, header=True, framed=True).to_dict()
    assert [(b["host"], b["port"]) for b in decoded["brokers"]] == [("10.0.1.7", 9092)]
    assert [(t["name"], t["error_code"]) for t in decoded["topics"]] == [(n, 29) for n, _ in TOPICS]
    with pytest.raises(KafkaError, match="another correlation id"):
        broker.with_header(correlation_id=78)
        splice_denied_metadata(req, bytes(broker.encode(header=True, framed=True)))
