"""The storage layer: engines, the schema, every SQL statement, and the migrations runner.

Everything above it calls these functions and gets frozen dataclasses or arrays back;
no other part of memtail builds SQL.
"""
