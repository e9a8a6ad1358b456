"""What an admin runs on the rules before they go live, without touching a student: check, rule
tests (``engine test``), dry-run, the impact of a change (``engine plan``), new-product, graph."""
