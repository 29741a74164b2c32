#!/usr/bin/env bash
# A single-node Slurm (munged, slurmctld, slurmd) for the tests, as root and without systemd.
#   start   install the packages if missing, write slurm.conf, start what is not running and
#           wait until the node takes jobs; idempotent
#   stop    cancel the cluster's jobs and stop only the daemons `start` started
#   status  the daemons and sinfo; exit 1 unless the node takes jobs
# Daemons started here are recorded as "PID STARTTIME" in $BALSAMD_SLURM_RUN_DIR [/run/balsamd-slurm];
# others are left alone.  /etc/slurm/slurm.conf is written only if absent or written here
# (BALSAMD_SLURM_FORCE=1 backs up another and replaces it).  Finished jobs stay in squeue for
# $BALSAMD_SLURM_MIN_JOB_AGE [900] s.
set -euo pipefail

RUN=${BALSAMD_SLURM_RUN_DIR:-/run/balsamd-slurm}
WAIT=${BALSAMD_SLURM_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
MARK="# written by balsamd scripts/slurm.sh; rewritten by each start"
LOGS=/var/log/slurm
T0=$SECONDS

say() { echo "slurm.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }
tails() { for f in "$@"; do if [ -s "$f" ]; then echo "--- $f" >&2; tail -n 20 "$f" >&2; fi; done; }
until_ok() { local end=$((SECONDS + $1)); shift; until "$@" &>/dev/null; do [ "$SECONDS" -lt "$end" ] || return 1; sleep 0.2; done; }

# a process is ours while its pid still has the start time recorded when we started it
starttime() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }
ours() { local p s; read -r p s 2>/dev/null <"$RUN/$1.pid" && [ -n "$s" ] && [ "$(starttime "$p")" = "$s" ] && echo "$p"; }
# PIDFILE COMM: the pid in PIDFILE if it is a live COMM
pidfile() { local p; p=$(cat "$1" 2>/dev/null) && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] && echo "$p"; }

munge_ok() { munge -n | unmunge; }
ctld_ok() { scontrol ping | grep -q 'is UP'; }
no_jobs() { [ -z "$(squeue -h -o %i)" ]; } # none pending, running or completing
node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1; }
node_ok() { case "$(node_state)" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac; }
node_settled() { node_ok || case "$(node_state)" in drain* | down) return 0 ;; *) return 1 ;; esac; } # resume: no wait

stop_ours() { # NAME...: TERM those started here, all at once; KILL what is left after 20 s
  local n pid left=()
  declare -A st=()
  for n in "$@"; do
    if pid=$(ours "$n"); then say "stopping $n (pid $pid)"; st[$pid]=$(starttime "$pid"); kill "$pid" || true; fi
    rm -f "$RUN/$n.pid"
  done
  for _ in $(seq 100); do
    left=(); for pid in "${!st[@]}"; do [ "$(starttime "$pid")" != "${st[$pid]}" ] || left+=("$pid"); done
    [ ${#left[@]} -gt 0 ] || return 0
    sleep 0.2
  done
  say "still running after 20 s, killed: ${left[*]}"; kill -KILL "${left[@]}" 2>/dev/null || true
}

start_one() { # NAME PIDFILE READY-CHECK COMMAND...
  local name=$1 pf=$2 ready=$3 pid logs=("$RUN/$1.out" "$LOGS/$1.log"); shift 3
  if pid=$(ours "$name"); then say "$name running (pid $pid)"
  elif pid=$(pidfile "$pf" "$name"); then say "$name running (pid $pid, not started here: left alone)"
  else
    say "starting $name"
    "$@" </dev/null >>"$RUN/$name.out" 2>&1 9>&- || { tails "${logs[@]}"; die "$name failed to start"; }
    until_ok "$WAIT" pidfile "$pf" "$name" || { tails "${logs[@]}"; die "$name did not start"; }
    pid=$(pidfile "$pf" "$name") && echo "$pid $(starttime "$pid")" >"$RUN/$name.pid"
  fi
  until_ok "$WAIT" "$ready" || { tails "${logs[@]}" /var/log/munge/munged.log; die "$name does not answer"; }
}

install_packages() {
  local p missing=()
  for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f="\${Status}" "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  say "installing ${missing[*]} (log: $RUN/apt.log)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$RUN/apt.log" 2>&1 ||
    { tails "$RUN/apt.log"; die "apt-get failed"; }
}

slurm_conf() { # the node's real CPUs; no RealMemory, memory not being a consumable resource
  local topo
  topo=$(slurmd -C | grep -o 'CPUs=[0-9]* .*ThreadsPerCore=[0-9]*') || die "'slurmd -C' shows no CPUs"
  cat <<EOF
$MARK
ClusterName=balsamd
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=${BALSAMD_SLURM_MIN_JOB_AGE:-900}
MailProg=/bin/true
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 $topo State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=$NODE MaxTime=30 State=UP
EOF
}

start() {
  local conf
  install_packages
  if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    [ "${BALSAMD_SLURM_FORCE:-0}" = 1 ] || die "$CONF was not written here; BALSAMD_SLURM_FORCE=1 replaces it"
    cp -a "$CONF" "$CONF.$(date +%Y%m%d%H%M%S)"
  fi
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 0600 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  install -d /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGS"
  conf=$(slurm_conf)
  if [ "$conf" != "$(cat "$CONF" 2>/dev/null)" ]; then
    printf '%s\n' "$conf" >"$CONF.new" && mv "$CONF.new" "$CONF"
    say "wrote $CONF"
    stop_ours slurmd slurmctld # to be started again on the new file
    if pidfile /run/slurmctld.pid slurmctld >/dev/null; then scontrol reconfigure || true; fi
  fi
  if munge_ok >/dev/null 2>&1 && ! ours munged >/dev/null; then say "munged running (not started here: left alone)"
  else start_one munged /run/munge/munged.pid munge_ok runuser -u munge -- munged; fi
  start_one slurmctld /run/slurmctld.pid ctld_ok slurmctld
  start_one slurmd /run/slurmd.pid true slurmd
  until_ok "$WAIT" node_settled || true
  if ! node_ok; then
    say "node $NODE is $(node_state) ($(sinfo -h -N -n "$NODE" -o '%E' | head -n 1)): resuming it"
    scontrol update NodeName="$NODE" State=RESUME || true
    until_ok "$WAIT" node_ok || { tails "$LOGS/slurmctld.log" "$LOGS/slurmd.log"; die "node $NODE is $(node_state)"; }
  fi
  say "node $NODE $(node_state); up after $((SECONDS - T0)) s"
}

stop() {
  if ours slurmctld >/dev/null && ! no_jobs; then
    squeue -h -o %i | xargs scancel || true
    until_ok 30 no_jobs || say "some jobs did not end"
  fi
  stop_ours slurmd slurmctld
  stop_ours munged
}

status() {
  local d pid
  for d in munged slurmctld slurmd; do
    if pid=$(ours "$d"); then say "$d running (pid $pid, started here)"; else say "$d not started here"; fi
  done
  ctld_ok 2>/dev/null || { say "slurmctld does not answer"; return 1; }
  sinfo && node_ok
}

[ "$(id -u)" = 0 ] || die "needs root"
NODE=$(hostname -s)
mkdir -p "$RUN"
exec 9>"$RUN/lock"
flock -w 300 9 || die "another start or stop holds $RUN/lock"
case "${1:-}" in
  start | stop | status) "$1" ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
