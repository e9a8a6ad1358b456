"""What the API, the CLI and (soon) the admin page share, so that none of them holds a query:
the read models (events, students, alerts, the status summary, a student's timeline) and the
admin commands (retry, replay, a new code, the CSV import), a module each; secrets redacted on
the way out (redaction.py), response shapes in schemas.py."""
