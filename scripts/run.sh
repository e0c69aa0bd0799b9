#!/usr/bin/env bash
# Start the embedded provider and the site side by side; Ctrl-C stops both.
set -euo pipefail
SITE_PORT=${1:-8000}
IDP_PORT=${2:-8001}
PY=.venv/bin/python

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

DJANGO_SETTINGS_MODULE=idp.settings IDP_ISSUER="http://127.0.0.1:${IDP_PORT}/o" \
  "$PY" manage.py runserver "127.0.0.1:${IDP_PORT}" --noreload &
pids+=($!)
# Development: DEBUG on unless the environment says otherwise (the settings default to off).
DJANGO_DEBUG="${DJANGO_DEBUG:-true}" IDP_URL="http://127.0.0.1:${IDP_PORT}" \
  "$PY" manage.py runserver "127.0.0.1:${SITE_PORT}" &
pids+=($!)

for _ in $(seq 1 60); do
  if "$PY" - "$SITE_PORT" "$IDP_PORT" <<'PYEOF' 2>/dev/null; then break; fi
import sys, urllib.request
for port, path in ((sys.argv[2], "/o/.well-known/openid-configuration"), (sys.argv[1], "/")):
    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)
PYEOF
  sleep 0.5
done

SITE_PORT="$SITE_PORT" "$PY" - <<'PYEOF'
import json
c = json.load(open(".run/demo-client.json"))
print(f"""
  Site:                 http://127.0.0.1:{__import__('os').environ.get('SITE_PORT', '8000')}/
  Embedded provider:    {c['issuer']}  (development only)
  Demo user:            {c['username']}
  Demo password:        {c['password']}

  Press Ctrl-C to stop both.
""")
PYEOF
wait -n "${pids[@]}"
