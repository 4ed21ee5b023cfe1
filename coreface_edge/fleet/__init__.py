"""A fleet of gates on one PostgreSQL (+ pgvector) server: a central gallery, revocations and
every gate's audit events. Gates stay local-first: they decide from their SQLite cache and sync
in the background. psycopg is imported only here, inside functions (the edge path never needs it).
"""
