#!/bin/sh
# First start of the compose PostgreSQL: the services' role owns memtail's database (and
# so its schema) and nothing else; it is not a superuser and cannot create roles. The
# analysts' read-only role of database memtail is created here too; migration 0007 grants
# it CONNECT and SELECT (PUBLIC then may not connect). The dashboard logs in as
# memtail_dashboard, a member of memtail_analyst: it can read the results and nothing more.
# Idempotent: safe to run again against a server that already has them.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v pw="$MEMTAIL_DB_PASSWORD" -v dashpw="$MEMTAIL_DASHBOARD_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE memtail LOGIN PASSWORD %L', :'pw')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memtail') \gexec
SELECT 'CREATE DATABASE memtail OWNER memtail'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'memtail') \gexec
SELECT 'CREATE ROLE memtail_analyst NOLOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memtail_analyst') \gexec
SELECT format('CREATE ROLE memtail_dashboard LOGIN PASSWORD %L IN ROLE memtail_analyst', :'dashpw')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memtail_dashboard') \gexec
SQL
