"""The service layer the CLI and the API share (neither imports the other)."""
