"""Fault injection for lg-deploy: a test-owned PostgreSQL, a chaos run and its checker."""
