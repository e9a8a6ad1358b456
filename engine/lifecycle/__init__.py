"""Deciding, pure (no database, no queue): an event's body as facts (inputs), the transition and its
steps (planner), the access each state grants (access)."""
