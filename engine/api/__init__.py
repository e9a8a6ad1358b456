"""HTTP: the Hotmart webhook and the admin API."""
