"""``membrane status``: each reconciler writing a BPF map, in the page and in ``-o json``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from membrane.agent.controllers import reconciler_status
from membrane.cli.dbg_status import render_status
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class Target:
    """Fails every write of key "b"."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    def update(self, key: str, value: int) -> None:
        if key == "b":
            raise OSError("map full")
        self.rows[key] = value

    def delete(self, key: str) -> None:
        self.rows.pop(key, None)

    def prune(self, keys: set[str]) -> None:
        pass


def test_the_agent_reports_rows_pending_errors_and_the_last_full_sync():
    table: Table[str, int] = Table("t")
    rec = Reconciler(table, Target(), name="bpf-test", wall_clock=lambda: NOW.timestamp() - 30)
    table.upsert_many({"a": 1, "b": 2, "c": 3})
    rec.run_once()
    out = json.loads(json.dumps(reconciler_status(rec.health().to_dict())))  # what -o json prints
    assert {k: out[k] for k in ("name", "healthy", "rows", "pending", "errors")} == \
        {"name": "bpf-test", "healthy": False, "rows": 3, "pending": 0, "errors": 1}
    assert "'b'" in out["last-error"] and "map full" in out["last-error"]
    assert out["last-full-sync"] == "2024-05-01T11:59:30Z"


def test_the_status_page_has_a_line_per_reconciler():
    status = {"reconcilers": [
        {"name": "bpf-policy", "healthy": True, "rows": 30012, "pending": 0, "errors": 0, "last-error": "",
         "last-full-sync": "2024-05-01T11:58:00Z"},
        {"name": "bpf-ipcache", "healthy": False, "rows": 12, "pending": 1, "errors": 1,
         "last-error": "update '10.0.2.9/32': BpfError: map full", "last-full-sync": "0001-01-01T00:00:00Z"}]}
    lines = render_status(status, verbose=False, now=NOW).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Reconciler Status:"))
    assert lines[start].split() == ["Reconciler", "Status:", "1/2", "healthy"]
    assert lines[start + 1].split()[:4] == ["Name", "Rows", "Pending", "Errors"]
    assert lines[start + 2].split()[:6] == ["bpf-ipcache", "12", "1", "1", "never", "update"]
    assert lines[start + 3].split() == ["bpf-policy", "30012", "0", "0", "2m0s", "ago", "no", "error"]


def test_no_reconcilers_section_without_the_key():
    assert "Reconciler" not in render_status({"membrane": {"state": "Ok", "msg": "x"}}, verbose=False, now=NOW)
