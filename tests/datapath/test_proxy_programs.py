"""L7 redirects in from_container / to_container (bpf/lib/proxy.h), packet by packet with
BPF_PROG_TEST_RUN: a policy slot carrying a proxy port sends the connection to the node's stack
(egress) or back in through the destination's lxc ingress, addressed to that device (ingress), and
conntrack remembers the port for the rest of the connection; a deny still wins."""

from __future__ import annotations

import pytest

from membrane.datapath.bpf.syscalls import prog_test_run
from membrane.datapath.maps.conntrack import CT_EGRESS, CT_INGRESS
from membrane.datapath.maps.endpoints import POLICY_EGRESS_ENFORCED, POLICY_INGRESS_ENFORCED
from membrane.datapath.maps.policy import DIR_EGRESS, PolicyRule
from membrane.model.datapath_codes import DROP_POLICY_DENY
from tests.datapath.packets import ETH_P_IP, ethernet, ipv4
from tests.datapath.test_policy_programs import (  # noqa: F401  (the node fixture)
    ACK,
    ID_A,
    ID_B,
    SYN,
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    TC_ACT_SHOT,
    TCP,
    A,
    B,
    Node,
    allow_a_to_b,
    node,
    tcp,
)

pytestmark = pytest.mark.root
PROXY = 10001


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def test_egress_redirect_goes_to_the_stack_for_every_packet_of_the_connection(node: Node) -> None:  # noqa: F811 (the imported fixture)
    node.enforce(A, POLICY_EGRESS_ENFORCED)
    node.policy.update(PolicyRule(ep_id=A[1].ep_id, direction=DIR_EGRESS, identity=ID_B, protocol=TCP, port=80,
                                  proxy_port=PROXY))
    assert node.send(A, B[0], tcp(40000, 80, SYN), TCP) == TC_ACT_OK  # to the stack (TPROXY), not to B's lxc
    assert node.send(A, B[0], tcp(40000, 80, ACK), TCP) == TC_ACT_OK  # established: still the proxy's
    assert node.send(A, B[0], tcp(40001, 81, SYN), TCP) != TC_ACT_OK  # another port: not redirected
    rows = [r for r in node.ct.rows() if r.dport == 80]
    assert [(r.direction, r.proxy_port, r.src_identity) for r in rows] == [(CT_EGRESS, PROXY, ID_A)]
    assert "ProxyPort=10001" in rows[0].describe()


def test_ingress_redirect_reenters_through_the_destination_lxc(node: Node) -> None:  # noqa: F811 (the imported fixture)
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    node.policy.update(PolicyRule(**{**allow_a_to_b().__dict__, "proxy_port": PROXY}))
    frame = ethernet(B[1].pod_mac, B[1].lxc_mac, ETH_P_IP, ipv4(A[0], B[0], tcp(40000, 80, SYN), ttl=63, proto=TCP))
    verdict, out = prog_test_run(node.obj.program_fd("to_container"), frame)
    assert verdict == TC_ACT_REDIRECT  # bpf_redirect(B's lxc, BPF_F_INGRESS), not into the pod
    assert out[:6] == mac(B[1].lxc_mac)  # addressed to the device, so the stack takes it
    verdict, _ = prog_test_run(node.obj.program_fd("to_container"), frame[:47] + bytes([ACK]) + frame[48:])
    assert verdict == TC_ACT_REDIRECT  # the established connection stays with the proxy
    (row,) = node.ct.rows()
    assert (row.direction, row.proxy_port, row.src_identity) == (CT_INGRESS, PROXY, ID_A)
    # without the proxy port the same packet is delivered
    node.ct.flush()
    node.policy.update(allow_a_to_b())
    assert node.deliver(A[0], B, tcp(40002, 80, SYN), TCP) == TC_ACT_OK


def test_a_deny_still_wins_over_a_redirected_allow(node: Node) -> None:  # noqa: F811 (the imported fixture)
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    node.policy.update(PolicyRule(**{**allow_a_to_b().__dict__, "proxy_port": PROXY}))
    node.policy.update(PolicyRule(ep_id=B[1].ep_id, direction=1, identity=ID_A, deny=True))
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_SHOT
    assert node.drops(DROP_POLICY_DENY, 1) == 1
    assert node.ct.rows() == []
