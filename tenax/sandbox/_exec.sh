# The in-container side of DockerSandbox.exec, run as
#   TENAX_EXEC_SH=<this> bash -c 'eval "$TENAX_EXEC_SH"' tenax-exec MODE NONCE SECS GRACE JOBS CMD
# MODE run : run CMD under coreutils timeout, then reap every process it left behind: those carrying
#            TENAX_EXEC=NONCE in their environment, orphans (reparented to init) that cleared their
#            environment, and all their descendants.
# MODE reap: kill every process but init, the container's main process and this one (resume, halt).
# Processes whose TENAX_JOB is one of JOBS (space separated) are background jobs and survive both.
# Builtins only after CMD ends: a fork bomb may have used up the pids limit.
# Last line on stderr: "tenax-exec:NONCE rc=.. timed_out=.. reaped=.. left=.. oom=..".
unset TENAX_EXEC_SH
mode=$1 nonce=$2 secs=$3 grace=$4 jobs=" $5 " cmd=$6
oom=0
read_oom() {
    local f k v
    oom=0
    for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
        [[ -r $f ]] || continue
        while read -r k v; do [[ $k == oom_kill ]] && oom=$v; done <"$f"
        return
    done
}
declare -A parent victim
scan() {  # fills victim[pid] with what to kill now
    local p line kv marker job main=0 first=
    local -A start spared mark
    parent=() victim=()
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [[ $p == 1 || $p == "$$" ]] && continue
        { read -r line <"/proc/$p/stat"; } 2>/dev/null || continue
        set -- ${line##*) }
        [[ $1 == Z || $1 == X ]] && continue
        parent[$p]=$2 start[$p]=${20} marker= job=
        { while IFS= read -r -d '' kv; do
            case $kv in TENAX_EXEC=*) marker=${kv#*=} ;; TENAX_JOB=*) job=${kv#*=} ;; esac
        done <"/proc/$p/environ"; } 2>/dev/null
        mark[$p]=$marker
        [[ -n $job && $jobs == *" $job "* ]] && spared[$p]=1
        if [[ $2 == 1 ]] && { [[ -z $first ]] || ((${20} < first)); }; then main=$p first=${20}; fi
    done
    for p in "${!parent[@]}"; do
        [[ $p == "$main" || -n ${spared[$p]} ]] && continue
        if [[ $mode == reap || ${mark[$p]} == "$nonce" || (-z ${mark[$p]} && ${parent[$p]} == 1) ]]; then
            victim[$p]=1
        fi
    done
    local grew=1
    while ((grew)); do  # and every descendant of a victim
        grew=0
        for p in "${!parent[@]}"; do
            [[ -n ${victim[$p]} || -n ${spared[$p]} || $p == "$main" ]] && continue
            [[ -n ${victim[${parent[$p]}]} ]] && victim[$p]=1 grew=1
        done
    done
}
rc=0 timed_out=0
if [[ $mode == run ]]; then
    read_oom
    oom_before=$oom
    t0=${EPOCHREALTIME/./}
    timeout --kill-after="$grace" -s TERM "$secs" bash -lc "$cmd"
    rc=$?
    t1=${EPOCHREALTIME/./}
    if ((rc == 124 || rc == 137)) && ((t1 - t0 >= 10#${secs/./} * 1000)); then timed_out=1; fi
fi
reaped=0 left=0
declare -A seen
for round in {1..40}; do
    scan
    ((${#victim[@]})) || break
    kill -STOP "${!victim[@]}" 2>/dev/null
    kill -KILL "${!victim[@]}" 2>/dev/null
    for p in "${!victim[@]}"; do seen[$p]=1; done
done
reaped=${#seen[@]}
((${#victim[@]})) && left=${#victim[@]}
read_oom
printf '\ntenax-exec:%s rc=%d timed_out=%d reaped=%d left=%d oom=%d\n' "$nonce" "$rc" "$timed_out" "$reaped" "$left" "$((oom - ${oom_before:-$oom}))" >&2
exit "$rc"
