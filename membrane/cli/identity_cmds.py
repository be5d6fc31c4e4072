"""``membrane identity list|get``: the cluster's security identities (cilium-dbg identity list)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from membrane.cli.arguments import CLIError
from membrane.cli.tabwriter import tabwrite
from membrane.cli.target import cluster_store

if TYPE_CHECKING:
    from membrane.identity.labels import LabelSet


def add_parser(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("identity", help="security identities (cilium-dbg identity list|get)")
    lab_arg(p)
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    isub = p.add_subparsers(dest="identity_cmd", required=True)
    q = isub.add_parser("list")
    lab_arg(q)
    q.add_argument("-o", "--output", choices=("json",))
    q = isub.add_parser("get")
    lab_arg(q)
    q.add_argument("id")
    q.add_argument("-o", "--output", choices=("json",))


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every membrane command imports this module to register its parser
    from membrane.identity.allocator import IdentityAllocator
    from membrane.identity.render import identity_list_rows
    from membrane.identity.reserved import reserved_identities
    from membrane.store.txn import StoreTxnOps

    store = cluster_store(args.lab)
    allocator = IdentityAllocator(store.client, StoreTxnOps(), store.layout.identities_prefix)
    identities: dict[int, LabelSet] = dict(reserved_identities())
    identities.update(allocator.list())
    if args.identity_cmd == "get":
        try:
            wanted = int(args.id)
        except ValueError:
            raise CLIError(f"identity {args.id!r}: expected a number") from None
        if wanted not in identities:
            raise CLIError(f"identity {wanted} not found")
        identities = {wanted: identities[wanted]}
    if args.output == "json":
        print(json.dumps([{"id": n, "labels": identities[n].strings()} for n in sorted(identities)], indent=2))
        return 0
    rows = identity_list_rows(identities)
    print(tabwrite("\n".join("\t".join(r) for r in rows), 5, 3).rstrip("\n"))
    return 0
