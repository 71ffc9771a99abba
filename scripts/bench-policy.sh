# Sourced by scripts/bench.sh, bench-score.sh and bench-smoke.sh: bench_policies DIR [USERS] [APPROVERS] writes
#   base.yaml          u000..u199 (USERS) and rv000..rv099 (engineers), ops1..ops5 (APPROVERS), flood-bot and
#                      flood-bot1..10 (services); db0..db4 with read (approvals 0, 8h) and write (1 approval, 1h)
#   policy.yaml        base + the anti-spam score on every request, with no limit or threshold in the way
#   policy-off.yaml    base + anti-spam off (the baseline for what the score costs)
#   policy-flood.yaml  base + the default anti-spam policy except the per-address limit (all is loopback)
bench_policies() {
  local WORK=$1 users=${2:-200} approvers=${3:-5}
  {
    echo "version: 1"
    echo "principals:"
    for i in $(seq -f "%03g" 0 $((users - 1))); do echo "  u$i: {groups: [engineers]}"; done
    for i in $(seq -f "%03g" 0 99); do echo "  rv$i: {groups: [engineers]}"; done
    for i in $(seq 1 "$approvers"); do echo "  ops$i: {groups: [ops]}"; done
    echo "  flood-bot: {groups: [engineers], kind: service}"
    for i in $(seq 1 10); do echo "  flood-bot$i: {groups: [engineers], kind: service}"; done
    echo "resources:"
    for r in 0 1 2 3 4; do
      echo "  db$r:"
      echo "    kind: postgres"
      echo "    roles:"
      echo "      read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}"
      echo "      write: {requesters: [engineers], approvers: [ops], approvals: 1, max_duration: 1h, allows: write}"
    done
  } > "$WORK/base.yaml"
  # The anti-spam score runs on every request (its history queries are what is measured), but no limit or
  # threshold stops the load generator; a second server with anti-spam off is the baseline for cycles.
  {
    cat "$WORK/base.yaml"
    echo "antispam:"
    echo "  limits: {per_principal: off, per_resource: off, per_source_ip: off, max_pending_per_principal: off}"
    echo "  approver_notifications: off"
    echo "  score: {thresholds: {throttle: 1000, extra_approval: 1000, quarantine: 1000, block: 1000}}"
  } > "$WORK/policy.yaml"
  { cat "$WORK/base.yaml"; echo "antispam: {enabled: false}"; } > "$WORK/policy-off.yaml"
  # The flood run: the default anti-spam policy, except the per-address limit (everything here is loopback).
  { cat "$WORK/base.yaml"; echo "antispam: {limits: {per_source_ip: off}}"; } > "$WORK/policy-flood.yaml"
}
