"""Chaining the egress proxy through the destination's ingress proxy on one node (bpf/lib/proxy.h,
proxy_chain_egress), packet by packet with BPF_PROG_TEST_RUN and the proxy's socket mark in the
packet's context: the egress proxy's upstream connection to an endpoint with ingress L7 rules is
diverted to that endpoint's ingress proxy (not delivered), its replies — the ingress proxy's answers,
routed to the client's address — go back to the egress proxy's socket, not into the client pod; an
ingress proxy's own upstream packets are never diverted again."""

from __future__ import annotations

import ctypes

import pytest

from membrane.datapath.bpf.libbpf import BpfTestRunOpts, lib
from membrane.datapath.maps.conntrack import CT_EGRESS, CT_F_PROXY_UPSTREAM, CT_INGRESS
from membrane.datapath.maps.endpoints import POLICY_EGRESS_ENFORCED, POLICY_INGRESS_ENFORCED
from membrane.datapath.maps.policy import PolicyRule
from tests.datapath.packets import ETH_P_IP, ethernet, ipv4
from tests.datapath.test_policy_programs import (  # noqa: F401  (the node fixture)
    ACK,
    SYN,
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    TCP,
    A,
    B,
    Node,
    allow_a_to_b,
    node,
    tcp,
)

pytestmark = pytest.mark.root
EGRESS_PROXY, INGRESS_PROXY = 10001, 10002
FROM_PROXY_INGRESS, FROM_PROXY_EGRESS, TO_PROXY = 0x0A00, 0x0B00, 0x0200


class SkbCtx(ctypes.Structure):
    """The leading fields of struct __sk_buff a test run may set (len and pkt_type must stay 0)."""

    _fields_ = [("len", ctypes.c_uint32), ("pkt_type", ctypes.c_uint32), ("mark", ctypes.c_uint32)]


def run_marked(prog_fd: int, frame: bytes, mark: int) -> tuple[int, bytes, int]:
    """(verdict, packet after, skb->mark after) of one test run on a packet carrying ``mark``."""
    data_in = ctypes.create_string_buffer(frame, len(frame))
    data_out = ctypes.create_string_buffer(len(frame) + 256)
    ctx_in, ctx_out = SkbCtx(mark=mark), ctypes.create_string_buffer(512)  # out: the kernel's whole __sk_buff
    opts = BpfTestRunOpts(sz=ctypes.sizeof(BpfTestRunOpts), data_in=ctypes.cast(data_in, ctypes.c_void_p),
                          data_out=ctypes.cast(data_out, ctypes.c_void_p), data_size_in=len(frame),
                          data_size_out=len(data_out), ctx_in=ctypes.cast(ctypes.byref(ctx_in), ctypes.c_void_p),
                          ctx_out=ctypes.cast(ctx_out, ctypes.c_void_p),
                          ctx_size_in=ctypes.sizeof(SkbCtx), ctx_size_out=len(ctx_out), repeat=1)
    rc = lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    assert rc == 0, f"test run failed: {rc}"
    return opts.retval, data_out.raw[: opts.data_size_out], SkbCtx.from_buffer_copy(ctx_out.raw[:12]).mark


def to_container(lab: Node, src_ip: str, dst: tuple, l4: bytes, mark: int) -> tuple[int, bytes, int]:
    frame = ethernet(dst[1].pod_mac, dst[1].lxc_mac, ETH_P_IP, ipv4(src_ip, dst[0], l4, ttl=64, proto=TCP))
    return run_marked(lab.obj.program_fd("to_container"), frame, mark)


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def redirected_to_proxy(result: tuple[int, bytes, int], lxc_mac: str, port: int) -> bool:
    verdict, out, mark = result
    return verdict == TC_ACT_REDIRECT and out[:6] == mac(lxc_mac) and mark == (port << 16 | TO_PROXY)


@pytest.fixture
def chained(node: Node) -> Node:  # noqa: F811 (the imported fixture)
    """A may talk to B:80 through its egress proxy; B's ingress rules on 80 redirect too."""
    node.enforce(A, POLICY_EGRESS_ENFORCED)
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    node.policy.update(PolicyRule(**{**allow_a_to_b().__dict__, "proxy_port": INGRESS_PROXY}))
    return node


def test_the_egress_proxys_upstream_goes_on_to_the_ingress_proxy(chained: Node) -> None:
    mark = EGRESS_PROXY << 16 | FROM_PROXY_EGRESS
    syn = to_container(chained, A[0], B, tcp(45000, 80, SYN), mark)
    assert redirected_to_proxy(syn, B[1].lxc_mac, INGRESS_PROXY), syn  # B's ingress proxy, not B
    ack = to_container(chained, A[0], B, tcp(45000, 80, ACK), mark)
    assert redirected_to_proxy(ack, B[1].lxc_mac, INGRESS_PROXY), ack  # established: still the ingress proxy
    rows = {(r.direction, r.proxy_port, bool(r.flags & CT_F_PROXY_UPSTREAM), r.src_identity)
            for r in chained.ct.rows() if r.dport == 80}
    assert rows == {(CT_INGRESS, INGRESS_PROXY, False, A[1].sec_identity),  # on to B's ingress proxy
                    (CT_EGRESS, EGRESS_PROXY, True, A[1].sec_identity)}  # answers back to the egress proxy
    # the ingress proxy answers from B:80 to A:45000; the stack routes it to A's lxc device, where it
    # must turn back to the egress proxy's upstream socket (A's own connection is on another port)
    answer = to_container(chained, B[0], A, tcp(80, 45000, SYN | ACK), 0)
    assert redirected_to_proxy(answer, A[1].lxc_mac, EGRESS_PROXY), answer


def test_without_ingress_rules_the_egress_proxy_reaches_the_destination(node: Node) -> None:  # noqa: F811
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    node.policy.update(allow_a_to_b())
    verdict, _out, _mark = to_container(node, A[0], B, tcp(45001, 80, SYN), EGRESS_PROXY << 16 | FROM_PROXY_EGRESS)
    assert verdict == TC_ACT_OK  # into B; its replies (from_container) go to the egress proxy
    (row,) = [r for r in node.ct.rows() if r.dport == 80]
    assert (row.direction, row.proxy_port, bool(row.flags & CT_F_PROXY_UPSTREAM)) == (CT_INGRESS, EGRESS_PROXY, True)


def test_the_ingress_proxys_own_upstream_is_not_diverted_again(chained: Node) -> None:
    verdict, _out, _mark = to_container(chained, A[0], B, tcp(45002, 80, SYN), INGRESS_PROXY << 16 | FROM_PROXY_INGRESS)
    assert verdict == TC_ACT_OK
    (row,) = [r for r in chained.ct.rows() if r.dport == 80]
    assert (row.direction, row.proxy_port, bool(row.flags & CT_F_PROXY_UPSTREAM)) == (CT_INGRESS, INGRESS_PROXY, True)
