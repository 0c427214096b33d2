#!/usr/bin/env bash
# Real single-node SLURM test (`make test-slurm`): runs a small DAG of the tiny config through
# `--profile profiles/slurm` on a Slurm 22.05 started here, checks its products equal a local run's, changes
# one threshold and checks that exactly the dependent job reruns through SLURM, renders the report, and
# tears down exactly the daemons it started (pid files, trap EXIT).
#
# Exit status: 0 passed, 77 skipped (reason printed: not root, no apt, packages not installable, a real
# /etc/slurm/slurm.conf present), anything else failed. Needs no systemd: the daemons are started here.
# Network: slurmctld/slurmd/munged run in a private network namespace (ip netns) with only a loopback
# interface; when netns is unavailable, slurm.conf binds them to 127.0.0.1 (CommunicationParameters=
# NoInAddrAny) instead. Env: BIN (venv bin folder), KEEP=1 keeps the state folder for debugging.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BIN:-$ROOT/.venv/bin}
HERE=$ROOT/tests/slurm
SKIP=77
# The products compared and the job sets asserted (tests/slurm/config.yaml: 2 scans, 3 views).
TARGETS=(results/body/body_model_check.json results/prior/semantic_prior.npz)
FIRST_RUN_RULES="accumulate_prior build_body_model check_body_model make_scans parse_scan_views render_scan_views"
RERUN_RULES="accumulate_prior"
# The 2-task training job (tests/slurm/train.yaml) and what it needs beyond the body model.
TRAIN_TARGET=results/train/sd/metrics.csv
TRAIN_RULES="make_images_train_coco_eft train_regressor"
# Seconds before a stuck snakemake gets SIGINT (SIGTERM does not stop it), then SIGKILL 30 s later. `make test`
# runs this beside pytest on the same cores: the first SLURM run took 366 s there on a busy 2-core machine.
RUN_LIMIT=${RUN_LIMIT:-600}

T0=$(date +%s)
say() { printf '[test-slurm %4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
skip() {
	echo "test-slurm: SKIPPED: $*"
	exit "$SKIP"
}

[ "$(id -u)" = 0 ] || skip "needs root (installs Debian packages, starts munged/slurmctld/slurmd)"
command -v apt-get >/dev/null || skip "apt-get not available (needs Debian/Ubuntu)"
[ -x "$BIN/snakemake" ] || skip "no snakemake in $BIN (run make install first)"
if [ -e /etc/slurm/slurm.conf ] && ! readlink /etc/slurm/slurm.conf | grep -q '/dsr-slurm\.'; then
	skip "/etc/slurm/slurm.conf exists (a real cluster's?); not replacing it"
fi

# --- packages -------------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
	! command -v munged >/dev/null; then
	say "installing slurmctld slurmd slurm-client munge (Debian)"
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
		slurmctld slurmd slurm-client munge >/dev/null; }; then
		skip "apt-get could not install slurmctld slurmd slurm-client munge"
	fi
fi
say "slurm $(dpkg-query -W -f '${Version}' slurmctld), munge $(dpkg-query -W -f '${Version}' munge), snakemake $("$BIN/snakemake" --version)"

# --- state folder, teardown -----------------------------------------------------------------------------
STATE=$(mktemp -d /tmp/dsr-slurm.XXXXXX)
chmod 0755 "$STATE"
NETNS=""
LINKED=0
STARTED=() # pid files of the daemons started here, in start order

stop_pidfile() {
	local pidfile=$1 pid
	[ -s "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# A daemon's parent exits before its forked child writes the pid file: wait for the file (up to 20 s; a busy
# machine, e.g. pytest starting beside this test, delays the child) before checking that the process lives.
wait_started() { # pid file, daemon name
	local pidfile=$1
	for _ in $(seq 100); do
		[ -s "$pidfile" ] && break
		sleep 0.2
	done
	[ -s "$pidfile" ] || {
		echo "$2 wrote no pid file ($pidfile) within 20 s of its start"
		exit 1
	}
	kill -0 "$(cat "$pidfile")" 2>/dev/null || {
		echo "$2 (pid $(cat "$pidfile")) died at start"
		exit 1
	}
}

teardown() {
	local rc=$?
	set +e
	if [ -s "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
		in_ns scancel --quiet --user=root >/dev/null 2>&1 # only this controller's jobs (ours)
	fi
	# Stop in reverse start order: slurmd, slurmctld, munged.
	for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_pidfile "${STARTED[i]}"; done
	[ "$LINKED" = 1 ] && rm -f /etc/slurm/slurm.conf
	[ -n "$NETNS" ] && ip netns del "$NETNS" 2>/dev/null
	if [ "$rc" != 0 ] && [ "$rc" != "$SKIP" ]; then
		for f in "$STATE"/slurmctld.log "$STATE"/slurmd.log "$STATE"/munged.log; do
			[ -f "$f" ] && {
				echo "--- tail $f"
				tail -n 25 "$f"
			}
		done
		for f in "$STATE"/work_slurm/.snakemake/slurm_logs/*/*/*.log "$STATE"/work_slurm/logs/train/sd.log*; do
			[ -f "$f" ] && {
				echo "--- tail $f"
				tail -n 25 "$f"
			}
		done
		echo "test-slurm: FAILED (rc=$rc) after $(($(date +%s) - T0)) s"
	fi
	if [ "${KEEP:-0}" = 1 ]; then echo "state kept in $STATE"; else rm -rf "$STATE"; fi
	exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- network namespace (fallback: loopback-only binding from slurm.conf) --------------------------------
in_ns() { "$@"; }
# nsenter switches only the network namespace (`ip netns exec` would also remount /sys, hiding cgroups).
# The extra address on lo: glibc's getaddrinfo(AI_ADDRCONFIG) ignores 127.0.0.1/::1, so Slurm cannot
# resolve any address in a namespace that has only those; 10.254.0.1 lives on the namespace's own lo and
# is unreachable from outside it.
NS_NAME=dsr-slurm-$$
if [ "${DSR_SLURM_NETNS:-1}" = 1 ] && ip netns add "$NS_NAME" 2>/dev/null; then
	NETNS=$NS_NAME
	if nsenter --net="/run/netns/$NETNS" ip link set lo up 2>/dev/null &&
		nsenter --net="/run/netns/$NETNS" ip addr add 10.254.0.1/32 dev lo 2>/dev/null; then
		in_ns() { nsenter --net="/run/netns/$NETNS" "$@"; }
		say "network: private namespace $NETNS (loopback only)"
	else
		ip netns del "$NETNS"
		NETNS=""
	fi
fi
[ -n "$NETNS" ] || say "network: no private namespace; daemons bound to 127.0.0.1 (NoInAddrAny)"

# --- munged ---------------------------------------------------------------------------------------------
mkdir -p "$STATE/munge" "$STATE/ctld" "$STATE/slurmd"
chmod 0755 "$STATE/munge" # munged refuses a socket folder writable by others
dd if=/dev/urandom of="$STATE/munge.key" bs=1024 count=1 status=none
chmod 0400 "$STATE/munge.key"
in_ns munged --force --key-file="$STATE/munge.key" --socket="$STATE/munge/munge.socket.2" \
	--pid-file="$STATE/munged.pid" --log-file="$STATE/munged.log" --seed-file="$STATE/munged.seed"
STARTED+=("$STATE/munged.pid")
wait_started "$STATE/munged.pid" munged

# --- slurm.conf -----------------------------------------------------------------------------------------
# 8 CPUs / 64 GB declared (SlurmdParameters=config_overrides) so the profile's real-cluster requests fit;
# the jobs of this DAG are small and run on the 2 real cores.
sed -e "s|@STATE@|$STATE|g" -e "s|@CPUS@|8|" -e "s|@MEM_MB@|64000|" "$HERE/slurm.conf.in" >"$STATE/slurm.conf"
echo "SlurmdParameters=config_overrides" >>"$STATE/slurm.conf"
# Outside a namespace: bind the configured address (127.0.0.1) instead of every interface.
[ -n "$NETNS" ] || echo "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny" >>"$STATE/slurm.conf"
# The executor runs a nested srun inside each job with SLURM_CONF stripped: the config must be here.
mkdir -p /etc/slurm
ln -sfn "$STATE/slurm.conf" /etc/slurm/slurm.conf
LINKED=1
export SLURM_CONF=$STATE/slurm.conf

# --- slurmctld, slurmd ----------------------------------------------------------------------------------
in_ns slurmctld -f "$STATE/slurm.conf"
STARTED+=("$STATE/slurmctld.pid")
wait_started "$STATE/slurmctld.pid" slurmctld
in_ns slurmd -f "$STATE/slurm.conf" -N localhost
STARTED+=("$STATE/slurmd.pid")
wait_started "$STATE/slurmd.pid" slurmd
state=""
for _ in $(seq 60); do
	for pidfile in "${STARTED[@]}"; do
		kill -0 "$(cat "$pidfile")" 2>/dev/null || {
			echo "the daemon of $pidfile (pid $(cat "$pidfile")) died while the node came up"
			exit 1
		}
	done
	state=$(in_ns timeout 3 sinfo -h -N -o '%t' 2>/dev/null | head -n 1 || true)
	[ "$state" = idle ] && break
	sleep 0.5
done
[ "$state" = idle ] || {
	echo "node never became idle (state: '${state:-none}')"
	exit 1
}
say "slurmctld + slurmd up, node idle"
if command -v ss >/dev/null; then
	listening=$(in_ns ss -Hltn 2>/dev/null | awk '$4 ~ /:681[78]$/ {printf "%s ", $4}')
	say "listening: $listening"
	# Outside a namespace every Slurm port must be on 127.0.0.1.
	if [ -z "$NETNS" ] && echo "$listening" | tr ' ' '\n' | grep -qv -e '^$' -e '^127\.0\.0\.1:'; then
		echo "a Slurm daemon listens beyond 127.0.0.1: $listening"
		exit 1
	fi
fi

# --- runs -----------------------------------------------------------------------------------------------
setup_workdir() {
	mkdir -p "$1/config"
	cp "$HERE/config.yaml" "$1/config/config.yaml"
}
snakemake_in() { # workdir, args...
	local work=$1
	shift
	timeout -s INT -k 30 "$RUN_LIMIT" "$BIN/snakemake" -s "$ROOT/Snakefile" --directory "$work" "$@"
}
# The SLURM run: submitted from inside the namespace, polling faster than the profile's 20 s (seconds-long
# jobs here), outputs visible at once (one file system). Status checks: the first after
# --seconds-between-status-checks (Snakemake's default 10 s), then the plugin adds 10 s per check that sees no
# job finish and goes back to --slurm-init-seconds-before-status-checks after one that does; 2 s for both
# keeps a ~30 s job from idling ~30 s before its successor is submitted.
run_slurm() {
	in_ns timeout -s INT -k 30 "$RUN_LIMIT" "$BIN/snakemake" -s "$ROOT/Snakefile" --directory "$SLURM" \
		--profile "$ROOT/profiles/slurm" --jobs 4 --latency-wait 5 --slurm-init-seconds-before-status-checks 2 \
		--seconds-between-status-checks 2 "$@"
}
# run_slurm with its output in $STATE/<log>; on failure the log's tail, then exit.
slurm_logged() { # log name, snakemake args...
	local log=$1
	shift
	run_slurm "$@" >"$STATE/$log" 2>&1 || {
		tail -n 60 "$STATE/$log"
		exit 1
	}
}
# The rules a run's log shows executed equal the expected ones (sorted, space-separated), else exit.
expect_rules() { # log name, expected rules, what ran
	local ran
	ran=$(rules_run "$STATE/$1")
	[ "$ran" = "$2" ] || {
		echo "$3 executed rules [$ran], expected [$2]"
		exit 1
	}
}
# Rules whose jobs a log reports as finished ("rule X:" / "localrule X:" headers of executed jobs).
rules_run() { grep -oE '^\s*(local)?(rule|checkpoint) [a-z_0-9]+:' "$1" | sed -E 's/^\s*(local)?(rule|checkpoint) //; s/:$//' |
	grep -vx all | sort -u | xargs; }

export PATH="$BIN:$PATH" PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-egl}
LOCAL=$STATE/work_local
SLURM=$STATE/work_slurm
setup_workdir "$LOCAL"
setup_workdir "$SLURM"

# The local reference runs beside the SLURM run: SLURM jobs spend most of their time starting snakemake and
# waiting for status checks, so the two share the 2 cores well.
local_run() { # log name
	snakemake_in "$LOCAL" --cores 1 "${TARGETS[@]}" >"$STATE/$1" 2>&1
}
wait_local() { # pid, log name
	wait "$1" || {
		tail -n 40 "$STATE/$2"
		echo "local reference run failed"
		exit 1
	}
}

say "SLURM run through --profile profiles/slurm, local reference run beside it"
local_run local.log &
local_pid=$!
t_slurm=$(date +%s)
slurm_logged slurm.log "${TARGETS[@]}"
t_slurm=$(($(date +%s) - t_slurm))
expect_rules slurm.log "$FIRST_RUN_RULES" "the SLURM run"
n_sbatch=$(grep -c 'has been submitted with SLURM jobid' "$STATE/slurm.log" || true)
n_jobs=$(grep -cE '^\s*(local)?rule [a-z_0-9]+:' "$STATE/slurm.log" || true)
# Every job really went through slurmctld (squeue keeps finished jobs for MinJobAge).
in_ns squeue -h -t all -o '%i %j %C %m %T %M' | sort -n >"$STATE/squeue.txt"
n_known=$(wc -l <"$STATE/squeue.txt")
sed 's/^/    squeue: /' "$STATE/squeue.txt"
say "SLURM run: $n_jobs jobs in $n_sbatch sbatch submissions, $n_known jobs known to slurmctld, ${t_slurm} s"
[ "$n_sbatch" -ge 1 ] && [ "$n_known" -ge "$n_sbatch" ] || {
	echo "expected every job to be submitted through sbatch"
	exit 1
}
# Grouping: the per-scan render+parse pairs of the tiny config's 2 scans form one SLURM job.
grep -q "Group job prior_scans" "$STATE/slurm.log" || {
	echo "no 'Group job prior_scans' in the SLURM log: the profile's groups are not applied"
	exit 1
}

wait_local "$local_pid" local.log
say "compare SLURM products with the local run's"
"$BIN/python" "$HERE/compare.py" "$LOCAL" "$SLURM" "${TARGETS[@]}"

say "threshold change (prior.background_prob 0.01 -> 0.05): rerun through SLURM"
for w in "$LOCAL" "$SLURM"; do sed -i 's/^  background_prob: 0.01$/  background_prob: 0.05/' "$w/config/config.yaml"; done
grep -q '^  background_prob: 0.05$' "$SLURM/config/config.yaml"
local_run local_rerun.log &
local_pid=$!
t_rerun=$(date +%s)
slurm_logged slurm_rerun.log "${TARGETS[@]}"
t_rerun=$(($(date +%s) - t_rerun))
expect_rules slurm_rerun.log "$RERUN_RULES" "after the threshold change SLURM"
wait_local "$local_pid" local_rerun.log
"$BIN/python" "$HERE/compare.py" "$LOCAL" "$SLURM" "${TARGETS[@]}"
"$BIN/python" - "$SLURM/results/prior/semantic_prior.npz" <<'EOF'
import json, sys
import numpy as np
with np.load(sys.argv[1]) as prior:
    provenance = json.loads(str(prior["provenance"]))
assert provenance["background_prob"] == 0.05, provenance
EOF
work=$(awk 'NR == 2 {printf "%.0f", $1}' "$SLURM/benchmarks/prior/accumulate_prior.tsv")
say "rerun: 1 job in ${t_rerun} s, of which ${work} s compute: per-job overhead $((t_rerun - work)) s" \
	"(sbatch, 2 snakemake starts, status polling)"

say "2-task training job (train.distributed.world_size 2, gloo) through SLURM, 1-process reference run beside it"
# tests/slurm/train.yaml: an SD run from the mean parameters on 4 generated images, 4 steps of batch 4. The CPU
# test node has no GPU: the profile's gpu 1 / 8 CPUs / 32 GB for train_regressor are set down here. In the
# private network namespace the host name does not resolve to an address there, so the workers meet on loopback.
local_train() {
	snakemake_in "$LOCAL" --cores 2 --configfile "$HERE/train.yaml" -- "$TRAIN_TARGET" >"$STATE/local_train.log" 2>&1
}
local_train &
local_pid=$!
t_train=$(date +%s)
MASTER_ADDR=127.0.0.1 GLOO_SOCKET_IFNAME=lo slurm_logged slurm_train.log --configfile "$HERE/train.yaml" \
	--config "train={distributed: {world_size: 2}}" \
	--set-resources train_regressor:gpu=0 train_regressor:cpus_per_task=1 train_regressor:mem_mb=4000 \
	-- "$TRAIN_TARGET"
t_train=$(($(date +%s) - t_train))
expect_rules slurm_train.log "$TRAIN_RULES" "the training run through SLURM"
grep -q "resources:.*tasks=2.*mpi=srun" "$STATE/slurm_train.log" || {
	echo "train_regressor was not submitted with tasks=2 and mpi=srun"
	exit 1
}
for r in 0 1; do
	[ -s "$SLURM/logs/train/sd.log.rank$r" ] || {
		echo "no log of worker rank $r ($SLURM/logs/train/sd.log.rank$r): the job did not start 2 workers"
		exit 1
	}
done
grep -q "starting 2 workers: srun --ntasks=2" "$SLURM/logs/train/sd.log" || {
	echo "the job did not start its workers with srun (logs/train/sd.log)"
	exit 1
}
wait_local "$local_pid" local_train.log
"$BIN/python" - "$LOCAL/$TRAIN_TARGET" "$SLURM/$TRAIN_TARGET" <<'EOF'
# The 2-worker run's logged losses equal the 1-process run's within tests/test_ddp.py's tolerance (1e-3).
import csv, sys
rows = [[r for r in csv.DictReader(open(p)) if r["phase"] == "train"] for p in sys.argv[1:]]
assert len(rows[0]) == len(rows[1]) == 4, [len(r) for r in rows]
terms = ["total", "keypoint_2d", "keypoint_3d", "smpl_pose", "smpl_betas"]
worst = 0.0
for one, two in zip(*rows):
    for t in terms:
        a, b = float(one[t]), float(two[t])
        worst = max(worst, abs(a - b) / max(abs(a), 1e-12))
assert worst <= 1e-3, f"2-worker losses differ from the 1-process run's by {worst:.2e} relative (> 1e-3)"
print(f"  metrics.csv: 4 steps, losses of 2 workers vs 1 process within {worst:.1e} relative")
EOF
say "training: 2 tasks through SLURM in ${t_train} s"

say "report"
snakemake_in "$SLURM" --report "$STATE/report.html" "${TARGETS[@]}" >"$STATE/report.log" 2>&1 || {
	tail -n 40 "$STATE/report.log"
	exit 1
}
[ -s "$STATE/report.html" ] || {
	echo "no report written"
	exit 1
}

say "PASSED: $n_jobs jobs through SLURM ($n_sbatch sbatch), rerun 1 job in ${t_rerun} s, 2-task training in" \
	"${t_train} s; total $(($(date +%s) - T0)) s"
