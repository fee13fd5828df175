"""Layer 4, the service: HTTP API, roles, the web monitor, serving, metrics, systemd, the daemon."""
