#!/usr/bin/env bash
# Validates Slack messages as Gatehouse renders them with slack_sdk's Block Kit models (tests).
#   scripts/slack-blocks.sh FILE     FILE: {"name": message or modal, ...}
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$("$REPO/scripts/oidc-provider.sh" python)
PYTHONPYCACHEPREFIX=$REPO/.build-oidc/pycache exec "$PY" "$REPO/scripts/slack-blocks.py" "$1"
