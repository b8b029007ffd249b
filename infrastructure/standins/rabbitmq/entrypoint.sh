#!/bin/sh
# The first user from RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS, as the official image
# takes them, reachable from other hosts (the default user otherwise is local only).
set -e
{
  echo "loopback_users = none"
  [ -n "${RABBITMQ_DEFAULT_USER:-}" ] && echo "default_user = $RABBITMQ_DEFAULT_USER"
  [ -n "${RABBITMQ_DEFAULT_PASS:-}" ] && echo "default_pass = $RABBITMQ_DEFAULT_PASS"
  echo "listeners.tcp.default = 5672"
} > /etc/rabbitmq/rabbitmq.conf
exec "$@"
