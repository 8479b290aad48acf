#!/bin/sh
# Make sure a local PostgreSQL answers on 127.0.0.1:5432 for the test suite (CI and dev).
set -eu
ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! command -v pg_isready >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null
  else
    echo "ci-services: PostgreSQL is not installed" >&2; exit 1
  fi
fi
ready && exit 0
ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
if [ -n "$ver" ]; then
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
fi
i=0
while ! ready; do
  i=$((i + 1)); [ $i -gt 30 ] && { echo "ci-services: PostgreSQL did not start" >&2; exit 1; }
  sleep 1
done
# trust auth for local test connections is the machine default; make sure role postgres exists
psql -h 127.0.0.1 -U postgres -c "select 1" >/dev/null 2>&1 || \
  su postgres -c "psql -c \"select 1\"" >/dev/null
