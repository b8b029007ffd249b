#!/bin/sh
# As the official image's: options alone are redis-server's.
set -e
case "${1:-}" in -*) set -- redis-server "$@" ;; esac
exec "$@"
