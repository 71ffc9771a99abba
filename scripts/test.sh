#!/usr/bin/env bash
# The whole test suite: unit tests, HTTP tests on real SQLite files over loopback, and the README
# walkthrough with the real binary. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --build-tests
swift test --skip-build
scripts/walkthrough-test.sh .build/debug/gatehouse
echo "all tests passed"
