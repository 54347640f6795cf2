"""The bus's web dashboard: sessions, the throughput it charts, and its routes (imported
by the app, not here: the context needs the sessions before the routes can exist)."""
