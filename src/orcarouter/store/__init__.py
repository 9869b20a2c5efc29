"""SQL schema, migrations and repositories: SQLite by default, PostgreSQL when configured."""
