"""The event pipeline: intake -> plan -> outbox of steps -> connectors (DESIGN section 2)."""
