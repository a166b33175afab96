"""Storage layer: the schema (public SQL interface), engines and migrations."""
