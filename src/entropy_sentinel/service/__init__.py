"""The monitoring service: ingest, storage, per-slice estimates, alerts, priorities.

See docs/service.md. The web app is built by `entropy_sentinel.service.app.create_app`;
the modules below it are usable on their own (the CLI reads the database directly).
"""
