"""In-memory tables with revisions and watches, and the generic reconciler that pushes desired state out; no I/O."""
