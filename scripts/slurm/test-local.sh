#!/usr/bin/env bash
# Checks scripts/slurm/submit.sh on a real one-node Slurm cluster on this machine (as root):
# installs Debian's slurm-wlm and munge if they are missing, starts munged, slurmctld and slurmd
# with a one-node slurm.conf, runs a small config as a 3-task job array plus the merge job,
# compares the merged files with an unsharded run byte for byte, and stops the daemons it
# started (also on failure).
#   scripts/slurm/test-local.sh [path/to/sanity]
set -euo pipefail
cd "$(dirname "$0")/../.."
SANITY=$(realpath "${1:-target/release/sanity}")
[ -x "$SANITY" ] || { echo "build the binary first: cargo build --release" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (it starts the Slurm daemons)" >&2; exit 2; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
WORK=$(mktemp -d /tmp/sanity-slurm.XXXXXX)
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
mkdir -p "$WORK"/{state,spool,log} /etc/slurm /run/munge /var/log/munge /var/lib/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=sanity-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ReturnToService=2
MpiDefault=none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
[ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
stop() {
  scancel --user=root 2>/dev/null || true
  [ -f "$WORK/slurmd.pid" ] && kill "$(cat "$WORK/slurmd.pid")" 2>/dev/null || true
  [ -f "$WORK/slurmctld.pid" ] && kill "$(cat "$WORK/slurmctld.pid")" 2>/dev/null || true
  [ -f /run/munge/munged.pid ] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
}
trap stop EXIT
runuser -u munge -- /usr/sbin/munged --force
slurmctld -c
slurmd -c
for _ in $(seq 60); do
  sinfo -h -o %T 2>/dev/null | grep -Eq '^idle' && break
  sleep 1
done
sinfo

CONFIG=crates/sanity-cli/tests/fixtures/tiny.toml
SANITY="$SANITY" THREADS=1 scripts/slurm/submit.sh "$CONFIG" "$WORK/out" 3 --wait
"$SANITY" run "$CONFIG" --threads 1 --out "$WORK/whole" --no-model-cache >/dev/null 2>&1
status=0
for f in scores.csv summary.csv verdicts.csv units.jsonl config.resolved.toml; do
  if cmp -s "$WORK/whole/$f" "$WORK/out/merged/$f"; then echo "same: $f"; else echo "DIFFERENT: $f"; status=1; fi
done
[ "$status" = 0 ] && echo "slurm job array + merge == unsharded run"
exit $status
