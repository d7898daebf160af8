#!/usr/bin/env bash
# The chaos run on a cluster of start.sh --cluster (2 nodes or more):
#
#   testenv/chaos.sh DIR [ROUNDS]
#
# ROUNDS (default 5) rounds of force deletions, a kubelet killed while Pods are created, a
# kubelet stopped while its Pods are deleted, a node deleted and registered again and the
# controller's leader killed, in a random order each round, against a Deployment and a
# StatefulSet; then it waits for the cluster to settle and checks that the pool holds exactly
# the running Pods' addresses. The same test runs in CI with 1 round
# (testenv/tests/run.sh DIR chaos). Bounded: each wait has the deadline of run.sh
# (IPAM_TESTENV_TEST_TIMEOUT, default 600 s).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: testenv/chaos.sh DIR [ROUNDS]" >&2; exit 2; }
rounds=${2:-5}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS: '$rounds' is not a positive number" >&2; exit 2; }
IPAM_CHAOS_ROUNDS=$rounds exec "$(dirname "$(readlink -f "$0")")/tests/run.sh" "$1" chaos
