"""Configuration: defines, per-destination settings, cfg checks and migration."""
