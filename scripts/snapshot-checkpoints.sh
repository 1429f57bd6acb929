#!/usr/bin/env bash
# Keeps copies of a training run's last checkpoint at chosen epochs, so that `critic-grad`
# (or `critic-data`) can measure the critics over training, not only at the end: started
# beside `cargo xtask train --name NAME`, it copies runs/NAME/last each time the end-of-epoch
# checkpoint of an epoch in EPOCHS is written, to OUT/epoch-E/last (with config.json and an
# empty metrics.jsonl: a run folder `critic-grad OUT/epoch-E` reads), checking the copy
# against the checkpoint's checksums. It stops when the run's log holds the evaluation of its
# last epoch (`optim.epochs` of its config.json), or when no `xtask train` process is left.
#
# usage: scripts/snapshot-checkpoints.sh runs/NAME OUT &
#        cargo xtask train --name NAME ...
#        cargo xtask critic-grad OUT/epoch-4 --batches 5
# Environment: EPOCHS (epochs completed, default "1 2 4 7 10 13 19 25 31").
set -u
run=$1; out=$2
want=" ${EPOCHS:-1 2 4 7 10 13 19 25 31} "
json() { python3 -c "import json,sys; v=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'v': v}))" "$@"; }
until [ -f "$run/config.json" ] && [ -f "$run/last/state.json" ]; do sleep 5; done
last=$(json "$run/config.json" "v['optim']['epochs']")
while true; do
  # The epoch the last checkpoint completed, or "-" for a checkpoint inside an epoch.
  e=$(json "$run/last/state.json" "v['position']['epoch'] if v['position']['batch'] == 0 else '-'" 2>/dev/null) \
    || { sleep 2; continue; }
  if [[ $want == *" $e "* ]] && [ ! -d "$out/epoch-$e/last" ]; then
    tmp=$out/.tmp-$e; rm -rf "$tmp"; mkdir -p "$tmp"
    if cp -r "$run/last" "$tmp/last" 2>/dev/null && (cd "$tmp/last" && sha256sum -c --quiet checksums.sha256 >/dev/null 2>&1) \
       && [ "$(json "$tmp/last/state.json" "v['position']['epoch']")" = "$e" ]; then
      cp "$run/config.json" "$tmp/config.json"; : > "$tmp/metrics.jsonl"; mv "$tmp" "$out/epoch-$e"
      echo "snapshot epoch $e $(date +%T)"
    else
      rm -rf "$tmp"
    fi
  fi
  grep -q "\"kind\":\"eval\",\"epoch\":$last," "$run/metrics.jsonl" 2>/dev/null && break
  pgrep -f "xtask.* (train|ablate)" >/dev/null || { echo "no training process left; stopping"; break; }
  sleep 3
done
