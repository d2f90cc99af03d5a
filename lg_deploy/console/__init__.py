"""The operator console at /ui: server-rendered pages over the PostgreSQL tables."""
