#!/bin/sh
# nginx resolves `web` once, at start: wait (up to PROXY_WAIT_SECONDS) until the name resolves to
# PROXY_WEB_REPLICAS addresses, so that every replica is in the upstream, then run nginx.
set -eu
want=${PROXY_WEB_REPLICAS:-1}
limit=${PROXY_WAIT_SECONDS:-120}
i=0
while :; do
    n=$(getent ahostsv4 web 2>/dev/null | awk '{print $1}' | sort -u | wc -l)
    [ "$n" -ge "$want" ] && break
    i=$((i + 1))
    if [ "$i" -ge "$limit" ]; then
        echo "convhub-proxy: web resolves to $n address(es) after ${limit}s, starting anyway" >&2
        break
    fi
    sleep 1
done
echo "convhub-proxy: upstream web = $(getent ahostsv4 web | awk '{print $1}' | sort -u | tr '\n' ' ')"
exec nginx
