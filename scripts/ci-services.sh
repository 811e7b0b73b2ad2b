#!/usr/bin/env bash
# Starts PostgreSQL and Redis on loopback when they are not running (no systemd needed) and
# makes the test role and database. Idempotent; run as root.
set -euo pipefail
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt <<'SQL'
SELECT 'CREATE ROLE im_bridge LOGIN PASSWORD ''im_bridge''' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'im_bridge')\gexec
SELECT 'CREATE DATABASE im_bridge_test OWNER im_bridge' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'im_bridge_test')\gexec
SQL
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
fi
pg_isready -h 127.0.0.1 -p 5432
redis-cli -h 127.0.0.1 -p 6379 ping
