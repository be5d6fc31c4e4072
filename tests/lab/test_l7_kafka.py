"""Kafka L7 policy end to end on a lab, with the policy of Cilium's Kafka guide and kcat (librdkafka, from
Debian) as the client: empire-hq may produce to empire-announce and deathstar-plans, nothing else; the
outpost may consume empire-announce. A denied request gets TOPIC_AUTHORIZATION_FAILED from the proxy."""

from __future__ import annotations

import shutil

import pytest

from tests.lab.harness import Lab

APP = """
apiVersion: v1
kind: Service
metadata: {name: kafka-service}
spec:
  selector: {app: kafka}
  ports: [{port: 9092, targetPort: 9092, protocol: TCP}]
---
apiVersion: v1
kind: Pod
metadata: {name: kafka-broker, labels: {app: kafka, zgroup: kafkaTestApp}}
spec:
  nodeName: k8s-w1
  containers:
    - name: kafka
      image: wurstmeister/kafka
      ports: [{containerPort: 9092}]
      env: [{name: KAFKA_CREATE_TOPICS, value: "empire-announce:1:1,deathstar-plans:1:1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: empire-hq, labels: {app: empire-hq, zgroup: kafkaTestApp}}
spec:
  nodeName: k8s-w2
  containers: [{name: c, image: debian}]
---
apiVersion: v1
kind: Pod
metadata: {name: empire-outpost, labels: {app: empire-outpost, zgroup: kafkaTestApp}}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: debian}]
"""

POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: secure-empire-kafka}
specs:
  - endpointSelector: {matchLabels: {app: kafka}}
    ingress:
      - fromEndpoints: [{matchLabels: {app: empire-hq}}]
        toPorts:
          - ports: [{port: "9092", protocol: TCP}]
            rules:
              kafka:
                - {role: produce, topic: deathstar-plans}
                - {role: produce, topic: empire-announce}
      - fromEndpoints: [{matchLabels: {app: empire-outpost}}]
        toPorts:
          - ports: [{port: "9092", protocol: TCP}]
            rules:
              kafka: [{role: consume, topic: empire-announce}]
"""

BROKER = "kafka-service:9092"


@pytest.fixture(scope="module")
def app(lab: Lab) -> None:
    if shutil.which("kcat") is None:
        pytest.skip("kcat (Debian package) not installed: make setup")
    lab.apply(APP)
    lab.wait_pods_ready(["kafka-broker", "empire-hq", "empire-outpost"])
    lab.apply(POLICY)


def produce(lab: Lab, pod: str, topic: str, message: str) -> tuple[int, str]:
    out = lab.exec(pod, "sh", "-c", f"echo '{message}' | kcat -b {BROKER} -P -t {topic} -p 0 "
                   "-X message.timeout.ms=8000", check=False, timeout=60)
    return out.returncode, out.stderr


def consume(lab: Lab, pod: str, topic: str) -> tuple[int, str, str]:
    out = lab.exec(pod, "kcat", "-b", BROKER, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
                   check=False, timeout=60)
    return out.returncode, out.stdout, out.stderr


def test_empire_hq_produces_to_an_allowed_topic(lab: Lab, app: None) -> None:
    rc, err = produce(lab, "empire-hq", "empire-announce", "Happy 40th Birthday to General Tagge")
    assert rc == 0, err
    rc, err = produce(lab, "empire-hq", "deathstar-plans", "deathstar reactor design v3")
    assert rc == 0, err


def test_empire_hq_producing_to_another_topic_is_refused_by_the_proxy(lab: Lab, app: None) -> None:
    rc, err = produce(lab, "empire-hq", "rebel-plans", "a trap")
    assert rc != 0 and "authorization failed" in err.lower(), err


def test_the_outpost_consumes_its_topic_and_not_the_plans(lab: Lab, app: None) -> None:
    rc, out, err = consume(lab, "empire-outpost", "empire-announce")
    assert rc == 0 and "Happy 40th Birthday to General Tagge" in out, err
    rc, out, err = consume(lab, "empire-outpost", "deathstar-plans")
    assert rc != 0 and "authorization failed" in err.lower() and "reactor" not in out, err


def test_hubble_shows_the_kafka_records(lab: Lab, app: None) -> None:
    compact = lab.run("observe", "--node", "k8s-w1", "--protocol", "kafka", "--last", "500").stdout
    assert "kafka-request DROPPED" in compact and "topic 'rebel-plans'" in compact, compact[-3000:]
    assert "kafka-request FORWARDED" in compact and "topic 'empire-announce'" in compact, compact[-3000:]
