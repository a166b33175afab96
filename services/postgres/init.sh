#!/bin/sh
# First start of the compose PostgreSQL: the services' role owns memtail's database (and
# so its schema) and nothing else; it is not a superuser and cannot create roles. The
# analysts' read-only role is created here too; migration 0002 grants it SELECT.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v pw="$MEMTAIL_DB_PASSWORD" <<'SQL'
CREATE ROLE memtail LOGIN PASSWORD :'pw';
CREATE DATABASE memtail OWNER memtail;
CREATE ROLE memtail_analyst NOLOGIN;
SQL
