"""Hubble UI in a real headless Chromium (Debian chromium + chromium-driver, driven by selenium) against a
live lab: the page served by ``membrane hubble ui`` shows the demo's workloads and Service, green edges for
allowed traffic and a red edge once a policy drops a connection. Saves a screenshot in the test's tmp dir
(and to ``MEMBRANE_UI_SCREENSHOT`` when set). Skipped when Chromium, its driver or selenium is absent."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.harness import MEMBRANE, Lab

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
APP = """
apiVersion: v1
kind: Pod
metadata: {name: frontend, labels: {app: frontend}}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: nicolaka/netshoot}]
---
apiVersion: v1
kind: Pod
metadata: {name: backend, labels: {app: backend}}
spec:
  nodeName: k8s-w1
  containers: [{name: web, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: db, labels: {app: db}}
spec:
  nodeName: k8s-w1
  containers: [{name: web, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: backend}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db-from-nobody}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress: [{}]
"""


def _driver():  # type: ignore[no-untyped-def]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e .[dev])")
    if not CHROMIUM or not DRIVER:
        pytest.skip("headless Chromium needs the Debian packages chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    return webdriver.Chrome(service=Service(DRIVER), options=options)


@pytest.fixture
def ui(lab: Lab) -> str:  # type: ignore[misc]
    proc = subprocess.Popen([MEMBRANE, "--lab", lab.name, "hubble", "ui", "--port", "0"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "http://127.0.0.1:" in line, f"hubble ui did not start: {line}"
        yield line.split()[3]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_service_map_shows_workloads_and_a_red_edge_after_a_policy_drop(lab: Lab, ui: str,
                                                                         tmp_path: Path) -> None:
    lab.apply(APP)
    pods = lab.wait_pods_ready(["frontend", "backend", "db"])
    svc_ip = lab.get_json("svc", "backend")[0]["spec"]["clusterIP"]
    lab.wait_for(lambda: lab.exec("frontend", "curl", "-s", "--max-time", "2", f"http://{svc_ip}/",
                                  check=False).returncode == 0, 30, "backend through its Service")
    db_ip = pods["db"]["status"]["podIP"]
    lab.exec("frontend", "curl", "-s", "--max-time", "1", f"http://{db_ip}/", check=False)
    driver = _driver()
    try:
        driver.get(f"{ui}?namespace=default")

        def edges() -> dict[tuple[str, str], str] | None:
            lab.exec("frontend", "curl", "-s", "--max-time", "1", f"http://{db_ip}/", check=False)
            time.sleep(2.2)  # the page refreshes every 2 s
            found = {(e.get_attribute("data-source"), e.get_attribute("data-target")):
                     e.get_attribute("class") for e in driver.find_elements("css selector", "line.edge")}
            return found if ("default/frontend", "default/db") in found else None
        found = lab.wait_for(edges, 40, "the frontend → db edge in the page")
        nodes = {n.get_attribute("data-id") for n in driver.find_elements("css selector", "g.node")}
        assert {"default/frontend", "default/backend", "default/db"} <= nodes
        assert found[("default/frontend", "default/db")] == "edge dropped"
        assert found[("default/frontend", "default/backend")] == "edge forwarded"
        red = driver.find_element("css selector", "line.edge.dropped")
        assert red.value_of_css_property("stroke") == "rgb(198, 40, 40)"
        rows = driver.find_elements("css selector", "#flows tbody td.verdict.dropped")
        assert rows, "the flow table lists the drop"
        shot = tmp_path / "hubble-ui.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get("MEMBRANE_UI_SCREENSHOT"):
            shutil.copy(shot, os.environ["MEMBRANE_UI_SCREENSHOT"])
    finally:
        driver.quit()
