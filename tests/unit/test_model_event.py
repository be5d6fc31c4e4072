"""Events: aggregation by name, the object they are about, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from membrane.model.event import about, event_name, expired, make_event

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "ns1", "uid": "u1"}}
CNP = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "web", "namespace": "ns1"}}


def test_same_occurrence_aggregates() -> None:
    first = make_event(POD, "Warning", "FailedCreatePodSandBox", "boom", "kubelet", "k8s-w1", now="2026-01-01T00:00:00Z")
    again = make_event(POD, "Warning", "FailedCreatePodSandBox", "boom", "kubelet", "k8s-w1", first,
                       now="2026-01-01T00:01:00Z")
    assert again["metadata"] == first["metadata"] == {"name": event_name(POD, "FailedCreatePodSandBox", "boom"),
                                                      "namespace": "ns1"}
    assert (again["count"], again["firstTimestamp"], again["lastTimestamp"]) == (
        2, "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z")
    assert again["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "ns1", "uid": "u1"}
    assert again["source"] == {"component": "kubelet", "host": "k8s-w1"}
    assert event_name(POD, "FailedCreatePodSandBox", "other") != first["metadata"]["name"]
    assert event_name(CNP, "FailedCreatePodSandBox", "boom") != first["metadata"]["name"]  # kind is part of it


def test_about_and_expiry() -> None:
    pod_ev = make_event(POD, "Normal", "Scheduled", "ok", "default-scheduler", now="2026-01-01T00:00:02Z")
    older = make_event(POD, "Normal", "Other", "ok", "x", now="2026-01-01T00:00:01Z")
    cnp_ev = make_event(CNP, "Warning", "PolicyNotEnforced", "L7", "cilium-agent")
    assert about([pod_ev, cnp_ev, older], POD) == [older, pod_ev]
    assert about([pod_ev, cnp_ev], CNP) == [cnp_ev]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert not expired(pod_ev, now + timedelta(minutes=59))
    assert expired(pod_ev, now + timedelta(minutes=61))
    assert expired({"lastTimestamp": "garbage"})
