"""The lab's Kafka broker and the Kafka proxy handler (membrane.proxy.kafka) on loopback, driven by real clients nobody here wrote:
kafka-python and kcat (librdkafka). With the Cilium guide's rule for empire-hq (produce to
empire-announce and deathstar-plans), producing to an allowed topic succeeds and to another gets
TOPIC_AUTHORIZATION_FAILED, with the connection kept. No root, no redirect: the proxy is the bootstrap
address and the broker advertises it."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from membrane.hubble.l7flow import L7Record
from membrane.lab.workloads.kafka import Broker, create_topics
from membrane.proxy.kafka import handle_kafka
from tests.unit.l7_harness import LoopServer, context

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EMPIRE_HQ = [{"role": "produce", "topic": "deathstar-plans"}, {"role": "produce", "topic": "empire-announce"}]


def listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def accept_loop(sock: socket.socket, broker: Broker) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=broker.serve_conn, args=(conn,), daemon=True).start()


kafka_brokers: list[Broker] = []


@pytest.fixture
def kafka() -> Iterator[tuple[int, int, list[L7Record]]]:
    """(broker port, proxy port, the proxy's records); the broker advertises the proxy."""
    broker_sock = listener()
    upstream = broker_sock.getsockname()[:2]
    records: list[L7Record] = []
    proxy = LoopServer(handle_kafka, lambda client: context("kafka", 9092, upstream, EMPIRE_HQ, records, client,
                                                            direction="ingress"))
    broker = Broker("127.0.0.1", proxy.port)
    create_topics(broker, "empire-announce:1:1,deathstar-plans:1:1,rebel-plans:1:1")
    threading.Thread(target=accept_loop, args=(broker_sock, broker), daemon=True).start()
    try:
        kafka_brokers.append(broker)
        yield upstream[1], proxy.port, records
    finally:
        broker_sock.close()
        proxy.close()


def producer(port: int):  # type: ignore[no-untyped-def]
    from kafka import KafkaProducer
    return KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=5000, max_block_ms=5000,
                         enable_idempotence=False, retries=0)


def test_kafka_python_produces_and_consumes_through_the_broker_alone():
    from kafka import KafkaConsumer, TopicPartition
    sock = listener()
    broker = Broker()
    threading.Thread(target=accept_loop, args=(sock, broker), daemon=True).start()
    port = sock.getsockname()[1]
    try:
        p = producer(port)
        meta = [p.send("empire-announce", f"msg {i}".encode()).get(timeout=10) for i in range(3)]
        assert [m.offset for m in meta] == [0, 1, 2]
        p.close()
        c = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}", enable_auto_commit=False, group_id=None,
                          consumer_timeout_ms=3000)
        tp = TopicPartition("empire-announce", 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = [m.value for m in c]
        c.close()
        assert got == [b"msg 0", b"msg 1", b"msg 2"]
    finally:
        sock.close()


def test_kafka_python_through_the_proxy_allowed_topic_ok_denied_topic_refused(kafka):
    from kafka.errors import TopicAuthorizationFailedError
    _broker_port, proxy_port, records = kafka
    p = producer(proxy_port)
    assert p.send("empire-announce", b"The Empire is hiring").get(timeout=10).offset == 0
    with pytest.raises(TopicAuthorizationFailedError):
        p.send("rebel-plans", b"nope").get(timeout=10)
    p.close()
    dropped = [r for r in records if r.verdict == "DROPPED"]
    assert dropped and {r.kafka["api_key"] for r in dropped} == {"metadata"}
    assert {r.kafka["topic"] for r in dropped} == {"rebel-plans"}
    assert dropped[0].kafka["error_code"] == 29 and dropped[0].summary.endswith("topic 'rebel-plans'")
    assert any(r.verdict == "FORWARDED" and r.kafka["api_key"] == "produce" and r.kafka["topic"] == "empire-announce"
               for r in records)
    # the producer now asks metadata for both topics in one request, denied as a whole as in Cilium (a
    # request naming several topics needs all of them allowed); a new one is fine
    p = producer(proxy_port)
    assert p.send("empire-announce", b"again").get(timeout=10).offset == 1
    p.close()


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat (Debian package) not installed")
def test_kcat_through_the_proxy(kafka):
    _broker_port, proxy_port, _records = kafka

    def produce(topic: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kcat", "-b", f"127.0.0.1:{proxy_port}", "-P", "-t", topic, "-p", "0",
                               "-X", "message.timeout.ms=5000", "-X", "topic.metadata.refresh.interval.ms=1000"],
                              input="hello from kcat\n", capture_output=True, text=True, timeout=30)

    ok = produce("deathstar-plans")
    assert ok.returncode == 0, ok.stderr
    denied = produce("rebel-plans")
    assert denied.returncode != 0 and "authorization" in denied.stderr.lower(), denied.stderr
    assert kafka_brokers[-1].topics["deathstar-plans"][0].next == 1  # the one message reached the broker
    # consuming is not in the produce role: kcat's ListOffsets is refused too
    got = subprocess.run(["kcat", "-b", f"127.0.0.1:{proxy_port}", "-C", "-t", "deathstar-plans", "-p", "0",
                          "-o", "beginning", "-e", "-q"], capture_output=True, text=True, timeout=30)
    assert got.returncode != 0 and "authorization failed" in got.stderr.lower(), got.stderr


def read_frame(s: socket.socket) -> bytes:
    head = b""
    while len(head) < 4:
        head += s.recv(4 - len(head))
    size = struct.unpack("!i", head)[0]
    body = b""
    while len(body) < size:
        body += s.recv(size - len(body))
    return head + body


def test_a_denied_request_is_answered_on_a_connection_that_stays_up_and_answers_keep_their_order(kafka):
    from kafka.protocol.producer import ProduceRequest, ProduceResponse
    _broker_port, proxy_port, _records = kafka
    T, P = ProduceRequest.TopicProduceData, ProduceRequest.TopicProduceData.PartitionProduceData

    def produce(topic: str, correlation: int) -> bytes:
        req = ProduceRequest[7](acks=1, timeout_ms=1000, topic_data=[T(name=topic, partition_data=[P(index=0, records=b"")])])
        req.with_header(correlation_id=correlation, client_id="raw")
        return bytes(req.encode(header=True, framed=True))

    with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as s:
        # pipelined: allowed, denied, allowed -- the answers come back in that order
        s.sendall(produce("empire-announce", 1) + produce("rebel-plans", 2) + produce("deathstar-plans", 3))
        answers = [ProduceResponse[7].decode(read_frame(s), header=True, framed=True) for _ in range(3)]
    assert [a.header.correlation_id for a in answers] == [1, 2, 3]
    codes = [a.to_dict()["responses"][0]["partition_responses"][0]["error_code"] for a in answers]
    assert codes == [0, 29, 0]


def test_garbage_and_oversized_frames_close_the_connection_and_the_proxy_keeps_serving(kafka):
    _broker_port, proxy_port, _records = kafka
    for junk in (b"\x7f\xff\xff\xff" + b"x" * 10, b"\x00\x00\x00\x04\x00\x63\x00\x00", b"\xff" * 64):
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as s:
            s.sendall(junk)
            deadline = time.time() + 5
            data = b"x"
            while data and time.time() < deadline:
                data = s.recv(100)
            assert data == b""
    p = producer(proxy_port)
    assert p.send("empire-announce", b"still here").get(timeout=10)
    p.close()


def test_the_cilium_guides_broker_images_run_the_lab_broker():
    from membrane.lab.workloads.images import resolve
    for image in ("docker.io/wurstmeister/kafka:2.13-2.8.1", "spotify/kafkaproxy:latest"):
        argv = resolve(image, None, None)
        assert argv[1:3] == ["-m", "membrane.lab.workloads.kafka"], argv
