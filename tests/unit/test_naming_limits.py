"""Names derived from user-chosen names fit the kernel's and the file system's limits (issue 18 item 3).

A 253-character pod name is valid in Kubernetes; its sandbox once failed with ``File name too long``
for its log file. Every derived name is checked here for every valid name length.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from membrane.lab.paths import LabPaths
from membrane.model import names
from membrane.model.naming import NAME_MAX, host_veth_name, pod_hostname

LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
SUBDOMAIN = st.lists(LABEL, min_size=1, max_size=6).map(".".join).map(lambda s: s[:253].rstrip("-."))
LONGEST_POD = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
PATHS = LabPaths("lab-with-20-chars-xx")


def test_longest_names_fit():
    assert len(LONGEST_POD) == 253 and names.dns1123_subdomain_error(LONGEST_POD) is None
    ns, container = "n" * 63, "c" * 63
    for path in (PATHS.pod_log(ns, LONGEST_POD), PATHS.pod_log(ns, LONGEST_POD, container)):
        assert len(os.path.basename(path).encode()) <= NAME_MAX
        assert path.startswith(f"{PATHS.log_dir}/pods/{ns}_aaaa") and path.endswith(".log")
    assert PATHS.pod_log(ns, LONGEST_POD, container).endswith(f"_{container}.log")
    assert len(PATHS.pod_netns(ns, LONGEST_POD).encode()) <= NAME_MAX
    assert len(pod_hostname(LONGEST_POD)) <= 63 and names.dns1123_label_error(pod_hostname("a" * 62 + ".b")) is None
    assert len(host_veth_name("x" * 300, "eth0")) <= 15


def test_short_names_keep_their_readable_log_names():
    assert PATHS.pod_log("default", "web") == f"{PATHS.log_dir}/pods/default_web.log"
    assert PATHS.pod_log("default", "web", "nginx") == f"{PATHS.log_dir}/pods/default_web_nginx.log"


def test_long_names_that_share_a_prefix_get_different_logs():
    a, b = "a" * 250 + "x", "a" * 250 + "y"
    assert PATHS.pod_log("n" * 63, a) != PATHS.pod_log("n" * 63, b)
    assert PATHS.pod_netns("default", a) != PATHS.pod_netns("default", b)


@settings(max_examples=200, deadline=None)
@given(ns=LABEL, pod=SUBDOMAIN, container=LABEL)
def test_every_valid_name_gives_names_within_limits(ns, pod, container):
    if names.dns1123_subdomain_error(pod) is not None:
        return  # the strategy's cut can leave an invalid name; those are refused at admission
    for path in (PATHS.pod_log(ns, pod), PATHS.pod_log(ns, pod, container)):
        assert len(os.path.basename(path).encode()) <= NAME_MAX
    assert len(PATHS.pod_netns(ns, pod).encode()) <= NAME_MAX
    hostname = pod_hostname(pod)
    assert 1 <= len(hostname) <= 63 and not hostname.endswith(("-", "."))
