#!/usr/bin/env bash
# How the CPU study (issue #29, study-cpu.yaml) runs on a machine shared with other work: walltime pieces of the
# sweep, one after another, until the sweep is done or END_UNIX (when the machine will be taken away, in seconds
# since the epoch) is 8 minutes off; each piece checkpoints its running training and MD at its walltime and the
# next resumes them. Run it from the repository root, in the background, at the lowest priority:
#   END_UNIX=$(date -d '+170 min' +%s) ONLY=train WORKERS=2 setsid nohup chrt -i 0 nice -n 19 \
#       bash protocols/sweeps/study-cpu.loop.sh >> ../runs/study-cpu/loop.log 2>&1 < /dev/null &
# ONLY: task kinds to run first (train: the committees, which are exported and committed as they finish, before
# any MD); once those are done the loop goes on with the whole sweep. WORKSPACE: default ../runs/study-cpu.
# Exit 0 when the sweep is done or the time is up. (HARNESS: the command, default .venv/bin/harness.)
cd "$(dirname "$0")/../.."
END_UNIX=${END_UNIX:?set END_UNIX}
WORKSPACE=${WORKSPACE:-../runs/study-cpu}
while :; do
  left=$(( (END_UNIX - $(date +%s)) / 60 - 8 ))
  [ "$left" -lt 5 ] && { echo "$(date -Is) loop: the end is near, stopping"; exit 0; }
  wt=$(( left < 180 ? left : 180 ))
  echo "$(date -Is) loop: piece of $wt min"
  ${HARNESS:-.venv/bin/harness} sweep run protocols/sweeps/study-cpu.yaml -w "$WORKSPACE" --workers "${WORKERS:-2}" \
      --walltime-min "$wt" ${ONLY:+--only $ONLY}
  rc=$?
  echo "$(date -Is) loop: piece exit $rc"
  if [ $rc -eq 0 ] && [ -n "${ONLY:-}" ]; then
    echo "$(date -Is) loop: the $ONLY tasks are done; on with the whole sweep"
    ONLY=
    continue
  fi
  [ $rc -eq 0 ] && { echo "$(date -Is) loop: the sweep is done"; exit 0; }
  [ $rc -ne 3 ] && sleep 60  # 3: the walltime left work; anything else (a failed task): retry after a pause
done
