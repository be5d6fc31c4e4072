"""``membrane identity list|get``: the cluster's security identities (cilium-dbg identity list)."""

from __future__ import annotations

import argparse
import json

from membrane.cli.commands import CLIError
from membrane.cli.tabwriter import tabwrite
from membrane.cli.target import cluster_store
from membrane.identity.allocator import IdentityAllocator
from membrane.identity.labels import LabelSet
from membrane.identity.render import identity_list_rows
from membrane.identity.reserved import reserved_identities
from membrane.store.txn import StoreTxnOps


def run(args: argparse.Namespace) -> int:
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
