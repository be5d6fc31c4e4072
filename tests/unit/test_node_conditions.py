"""Node conditions: which nodes count as unreachable."""



def test_unreachable_counts_other_nodes_that_are_not_ready() -> None:
    from membrane.model.node_conditions import unreachable

    def node(name: str, ready: str | None) -> dict:
        conds = [] if ready is None else [{"type": "Ready", "status": ready}]
        return {"metadata": {"name": name}, "status": {"conditions": conds}}
    nodes = [node("a", "True"), node("b", "Unknown"), node("c", None), node("me", "False")]
    assert unreachable(nodes, "me") == 2  # b and c; this node is not counted
    assert unreachable(nodes, "b") == 2  # c and me
    assert unreachable([], "me") == 0
