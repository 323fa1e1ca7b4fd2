#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the SLURM tests (tests/workflow/test_slurm.py) and for trying the
# slurm profiles by hand. Root, no systemd; safe to run again (it changes nothing that is already right).
#   - installs Debian's slurm-wlm and munge when sinfo or munged is missing
#   - writes /etc/slurm/slurm.conf and gres.conf for this machine: its real CPUs and memory (slurmd -C),
#     partitions `cpu` (default) and `gpu`, one fake GPU of type h100 backed by /dev/null so that
#     `--gpus=h100:1` requests are scheduled (nothing on this node can use it); no slurmdbd, so sacct
#     answers nothing: the profiles query job status with squeue
#   - starts munged, slurmctld and slurmd (restarting them when the config changed) and waits until
#     sinfo shows the node idle
# Logs: /var/log/slurm/slurm{ctld,d}.log, /var/log/munge/munged.log.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "slurm-local.sh: run as root" >&2; exit 2; }

if ! command -v sinfo >/dev/null || ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
fi

# munge: a key (the package makes one; keep it) and its run folders
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf for this machine
node=$(hostname -s)
hw=$(slurmd -C | head -n1)  # NodeName=... CPUs=... Boards=... SocketsPerBoard=... CoresPerSocket=... ThreadsPerCore=... RealMemory=...
hw=${hw#NodeName=* }
install -d -m 0755 /etc/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
new=$(mktemp)
cat >"$new" <<EOF
# Written by scripts/slurm-local.sh: a one-node test cluster (no accounting database).
ClusterName=cosmos-t2-local
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue keeps finished jobs this long: the executor plugin's squeue status queries need them
MinJobAge=300
KillWait=5
InactiveLimit=0
NodeName=$node $hw Gres=gpu:h100:1 State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node MaxTime=INFINITE State=UP
EOF
gres=$(mktemp)
echo "NodeName=$node Name=gpu Type=h100 File=/dev/null" >"$gres"
changed=0
cmp -s "$new" /etc/slurm/slurm.conf || changed=1
cmp -s "$gres" /etc/slurm/gres.conf || changed=1
install -m 0644 "$new" /etc/slurm/slurm.conf
install -m 0644 "$gres" /etc/slurm/gres.conf
rm -f "$new" "$gres"

running() {  # a daemon that this script started, by its pid file
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}
stop() {
    if running "$1"; then
        pid=$(cat "$1")
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
}
if [ "$changed" = 1 ]; then
    stop /run/slurmd.pid
    stop /run/slurmctld.pid
fi
running /run/slurmctld.pid || slurmctld
running /run/slurmd.pid || slurmd

# Up when the node answers idle (or busy with jobs, on a second run); a node left down is resumed.
state=""
for _ in $(seq 120); do
    state=$(sinfo -h -N -n "$node" -o %T 2>/dev/null | head -n1 || true)
    case "$state" in
    idle | mixed | allocated | completing) break ;;
    down* | drain*) scontrol update NodeName="$node" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
done
case "$state" in
idle | mixed | allocated | completing) ;;
*)
    echo "slurm-local.sh: node $node is '${state:-not answering}' after 60 s; see /var/log/slurm/" >&2
    exit 1
    ;;
esac
sinfo
