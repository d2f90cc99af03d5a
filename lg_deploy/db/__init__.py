"""PostgreSQL plumbing: connection pool, named queries, migrations, embedded server."""
