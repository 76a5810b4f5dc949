#!/usr/bin/env bash
# zsnap's metrics and pull reports, end to end:
#   * zsnap serves /metrics on 127.0.0.1:<port the kernel picked> ([metrics] address = port 0)
#     and logs the bound address (metrics_serving address=...);
#   * a private containerd pulls and runs the test image through zsnap, and the Snapshots API
#     requests it made show up as zsnap_grpc_request_duration_seconds{method,code} series;
#   * a real prometheus (Debian package, private config and storage, 127.0.0.1:<free port>)
#     scrapes zsnap: up{job="zsnap"} == 1 and the gRPC duration series are queryable;
#   * a CRI pull through zsnap's remote path (`zsnap pull --cri-endpoint`) leaves a timing
#     report whose numbers add up (layers, bytes equal to the blobs' sizes in the manifest,
#     layer times within the wall time) and metrics that agree with it (layers, bytes, stage
#     and image histograms), in zsnap's /metrics and in prometheus;
#   * the report history survives a restart: fixture reports written under <root>/reports are
#     pruned to [reports] keep, a corrupt one is quarantined, and `zsnap stats` lists them and
#     the real pull's report before and after restarting the daemon.
# Needs: ZSNAP_BIN, root, overlayfs; containerd, runc, docker-registry, skopeo, prometheus,
# curl, jq.
# shellcheck disable=SC2034  # ITEST_CURRENT names the phase for itest_die and the exit trap
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/all.sh"

itest_init metrics_test
itest_require_cmd prometheus curl jq skopeo gzip tar sha256sum unshare

# containerd's CRI plugin and zsnap's remote path read the same hosts tree (plain HTTP).
export CONTAINERD_WITH_CRI=1
export CONTAINERD_CRI_REGISTRY_CONFIG_PATH=$ITEST_DIR/containerd-certs.d
mkdir -p "$CONTAINERD_CRI_REGISTRY_CONFIG_PATH"
ZSNAP_EXTRA="[remote]
hosts_dir = \"$CONTAINERD_CRI_REGISTRY_CONFIG_PATH\"
[metrics]
address = \"127.0.0.1:0\"
[reports]
keep = 3"

# metrics_address: the address the running zsnap logged for /metrics (empty until it has).
metrics_address() {
  grep -oE 'metrics_serving address=[^ ]+' "$ZSNAP_LOG" | tail -n1 | sed 's/.*address=//'
}
metrics__logged() {
  zsnap_running || return 99
  [[ -n $(metrics_address) && $(metrics_address) != "$1" ]]
}

# start_zsnap: start the daemon (reusing its root) and wait for its new /metrics address.
start_zsnap() {
  local previous
  previous=$(metrics_address 2>/dev/null || true)
  zsnap_start "$ITEST_DIR/zsnap-root" "$ZSNAP_EXTRA" || return 1
  itest_wait_for 10 "metrics_serving in $ZSNAP_LOG" metrics__logged "$previous" || return 1
  METRICS_ADDR=$(metrics_address)
  itest_log "zsnap /metrics on $METRICS_ADDR"
}

# sample NAME{LABELS}: the value of one series in zsnap's exposition (empty if absent).
sample() {
  curl -fsS --max-time 5 "http://$METRICS_ADDR/metrics" | awk -v s="$1" '$1 == s {print $2}'
}

# fixture_report FILE STARTED_MS IMAGE: write one image-pull report as the daemon would.
fixture_report() {
  local file=$1 started=$2 image=$3
  jq -n --argjson started "$started" --arg image "$image" '
    def stage($b): {busy_s: $b, wait_s: 0};
    {image: $image, manifest_digest: ("sha256:" + ("a" * 64)), namespace: "default",
     started_unix_ms: $started, wall_s: 0.75, bytes_in: 1000, bytes_out: 3000,
     layers_total: 1, layers_remote: 1, layers_fallback: 0, outcome: "ok",
     layers: [{image: $image, manifest_digest: ("sha256:" + ("a" * 64)),
               digest: ("sha256:" + ("b" * 64)),
               media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
               chain_id: ("sha256:" + ("c" * 64)), index: 0, queue_wait_s: 0.01,
               fetch: {ttfb_s: 0.02, duration_s: 0.4, bytes: 1000, retries: 0},
               unpack: {layer: "l", codec: "gzip", digest: ("sha256:" + ("b" * 64)),
                        diff_id: ("sha256:" + ("d" * 64)), bytes_in: 1000, bytes_out: 3000,
                        entries: 3, file_bytes: 2500, threads: 4, read: stage(0.05),
                        decode: stage(0.15), extract: stage(0.1), write: stage(0.3),
                        verify: stage(0.03), total_s: 0.5, throughput_mbps: 0.006},
               commit_s: 0.005, total_s: 0.52, outcome: "ok", error: ""}]}' >"$file"
}

# --- report history fixtures (before the first start) -------------------------------------
ITEST_CURRENT=fixtures
REPORTS=$ITEST_DIR/zsnap-root/reports
mkdir -p "$REPORTS"
fixture_report "$REPORTS/001795000000001-000.json" 1795000000001 fixture/oldest:v1
fixture_report "$REPORTS/001795000000002-000.json" 1795000000002 fixture/older:v1
fixture_report "$REPORTS/001795000000003-000.json" 1795000000003 fixture/middle:v1
fixture_report "$REPORTS/001795000000004-000.json" 1795000000004 fixture/newest:v1
echo '{"image": "truncated' >"$REPORTS/001795000000005-000.json"

# --- daemon with /metrics ------------------------------------------------------------------
ITEST_CURRENT=start
start_zsnap || itest_die "zsnap did not start with [metrics] (log: $ZSNAP_LOG)"
itest_check_match metrics-bound-ephemeral-port '^127\.0\.0\.1:[1-9][0-9]*$' "$METRICS_ADDR"
itest_check_match metrics-content-type 'text/plain; version=0.0.4' \
  "$(curl -fsS -o /dev/null -w '%{content_type}' "http://$METRICS_ADDR/metrics")"
itest_check_match metrics-build-info '^zsnap_build_info\{grpc_version="[^"]+",version="[^"]+"\} 1$' \
  "$(curl -fsS "http://$METRICS_ADDR/metrics" | grep '^zsnap_build_info')"
itest_check_eq metrics-404-elsewhere 404 \
  "$(curl -sS -o /dev/null -w '%{http_code}' "http://$METRICS_ADDR/")"

ITEST_CURRENT=reports
itest_check_eq reports-pruned-to-keep \
  "001795000000002-000.json 001795000000003-000.json 001795000000004-000.json" \
  "$(cd "$REPORTS" && ls -1 ./*.json | sed 's|^\./||' | tr '\n' ' ' | sed 's/ $//')"
itest_check reports-corrupt-quarantined test -f "$REPORTS/001795000000005-000.json.corrupt"
itest_check_match reports-corrupt-warned 'unreadable pull report .*001795000000005-000.json' \
  "$(cat "$ZSNAP_LOG")"
itest_check_eq stats-json-lists-fixtures "fixture/newest:v1 fixture/middle:v1 fixture/older:v1" \
  "$("$ZSNAP_BIN" stats --root "$ZSNAP_ROOT" --json | jq -r '[.[].image] | join(" ")')"

# --- Snapshots API traffic from a real containerd -----------------------------------------
ITEST_CURRENT=pull
registry_start || itest_die "docker-registry did not start"
containerd_cri_registry_http "$REGISTRY_ADDR" || itest_die "cannot write hosts.toml"
containerd_start || itest_die "containerd did not start (log: $CONTAINERD_LOG)"
image_build_oci "$ITEST_DIR/oci" v1 none || itest_die "could not build the test image"
image_push "$ITEST_DIR/oci" v1 itest/metrics:gzip gzip >/dev/null || itest_die "skopeo push failed"
REF=$REGISTRY_ADDR/itest/metrics:gzip
itest_check ctr-pull-through-zsnap itest_ctr image pull --plain-http --snapshotter zsnap "$REF"
itest_check_eq ctr-run-through-zsnap "$IMAGE_EXPECT_HELLO" \
  "$(itest_ctr run --rm --snapshotter zsnap "$REF" metrics-probe cat /data/hello.txt 2>&1)"

ITEST_CURRENT=grpc-metrics
G=zsnap_grpc_request_duration_seconds
prepares=$(sample "${G}_count{code=\"OK\",method=\"Prepare\"}")
commits=$(sample "${G}_count{code=\"OK\",method=\"Commit\"}")
# Three layers unpacked (three Prepare + Commit) and a container's rootfs (one more Prepare).
itest_check prepare-requests-counted test "${prepares:-0}" -ge 4
itest_check commit-requests-counted test "${commits:-0}" -ge 3
itest_check_match grpc-buckets-cumulative "^${G}_bucket\\{code=\"OK\",method=\"Prepare\",le=\"\\+Inf\"\\} ${prepares}\$" \
  "$(curl -fsS "http://$METRICS_ADDR/metrics" | grep "^${G}_bucket{code=\"OK\",method=\"Prepare\",le=\"+Inf\"}")"
# An error is timed under its code: a Stat of a snapshot that does not exist, sent straight to
# zsnap (containerd answers that one from its own metadata without asking the snapshotter).
BIN=$ITEST_DIR/bin
out=$(bash "$(dirname "${BASH_SOURCE[0]}")/tools/build.sh" "$BIN" 2>&1) ||
  itest_die "building tests/integration/tools failed: $out"
itest_check_fails stat-missing-snapshot "$BIN/snapctl" -address "$ZSNAP_SOCKET" verify no-such-snapshot
itest_check grpc-error-code-counted test "$(sample "${G}_count{code=\"NOT_FOUND\",method=\"Stat\"}")" = 1
itest_check_eq nothing-in-flight 0 "$(sample zsnap_layers_in_flight)"

# --- a remote pull: its report and metrics add up -----------------------------------------
ITEST_CURRENT=remote-pull
image_build_oci "$ITEST_DIR/oci-mixed" v1 mixed || itest_die "could not build the mixed image"
image_push_raw "$ITEST_DIR/oci-mixed" v1 itest/metrics-remote:v1 >/dev/null || itest_die "push failed"
RIMAGE=$REGISTRY_ADDR/itest/metrics-remote:v1
BLOB_BYTES=$(registry_manifest itest/metrics-remote:v1 | jq '[.layers[].size] | add')
NLAYERS=$(registry_manifest itest/metrics-remote:v1 | jq '.layers | length')
itest_check zsnap-pull-cri "$ZSNAP_BIN" pull --cri-endpoint "$CONTAINERD_ADDRESS" --timeout 5m "$RIMAGE"

# remote_reports: the reports of real pulls (not the fixtures), newest first, as a JSON array.
remote_reports() {
  "$ZSNAP_BIN" stats --root "$ZSNAP_ROOT" --json --limit 100 |
    jq -c '[.[] | select(.image | startswith("fixture/") | not)]'
}
remote__reported() { [[ $(remote_reports | jq length) -ge 1 ]]; }
itest_wait_for 30 "the remote pull's report" remote__reported
REPORT=$(remote_reports | jq -c '.[0] // {}')
itest_check_eq report-layers-remote "$NLAYERS/$NLAYERS/0" \
  "$(jq -r '"\(.layers_remote)/\(.layers_total)/\(.layers_fallback)"' <<<"$REPORT")"
itest_check_eq report-outcome ok "$(jq -r .outcome <<<"$REPORT")"
itest_check_eq report-bytes-in-are-the-blobs "$BLOB_BYTES" "$(jq .bytes_in <<<"$REPORT")"
itest_check_eq report-consistent true "$(jq '
    ([.layers[] | select(.outcome == "ok")] | length) == .layers_remote and
    ([.layers[].fetch.bytes] | add) == .bytes_in and
    ([.layers[].unpack.bytes_out] | add) == .bytes_out and
    ([.layers[] | .fetch.bytes == .unpack.bytes_in] | all) and
    ([.layers[] | .queue_wait_s + .unpack.total_s + .commit_s <= .total_s + 0.05] | all) and
    ([.layers[].total_s] | max) <= .wall_s + 0.05' <<<"$REPORT")"
itest_check_match report-logged "pull_image image=.*outcome=ok layers=$NLAYERS remote=$NLAYERS" \
  "$(cat "$ZSNAP_LOG")"
# The daemon checks every record against plugin/pull_stats.h's rules and warns when one is off.
itest_check_eq report-passes-daemon-checks 0 "$(grep -c 'inconsistent timing record' "$ZSNAP_LOG")"

# sum_series PREFIX: the sum of every sample whose series starts with PREFIX.
sum_series() {
  curl -fsS "http://$METRICS_ADDR/metrics" |
    awk -v p="$1" 'index($1, p) == 1 {s += $2} END {printf "%.0f\n", s}'
}
itest_check_eq metrics-layers-ok "$NLAYERS" "$(sum_series 'zsnap_layers_total{')"
itest_check_eq metrics-fetched-bytes "$BLOB_BYTES" "$(sum_series zsnap_fetched_bytes_total)"
itest_check_eq metrics-unpacked-bytes "$(jq .bytes_out <<<"$REPORT")" \
  "$(sum_series zsnap_unpacked_bytes_total)"
itest_check_eq metrics-stage-total-layers "$NLAYERS" "$(curl -fsS "http://$METRICS_ADDR/metrics" |
  awk '$1 ~ /^zsnap_layer_stage_duration_seconds_count\{.*stage="total"/ {s += $2} END {print s + 0}')"
itest_check_eq metrics-image-pulls-ok 1 "$(sample 'zsnap_image_pull_duration_seconds_count{outcome="ok"}')"
itest_check_eq metrics-no-fallbacks 0 "$(sum_series zsnap_fallbacks_total)"
itest_check_eq metrics-nothing-in-flight-after-pull 0 "$(sample zsnap_layers_in_flight)"

# --- a real prometheus scrapes zsnap ------------------------------------------------------
ITEST_CURRENT=prometheus
prepares=$(sample "${G}_count{code=\"OK\",method=\"Prepare\"}")  # now that all pulls are done
PROM_DIR=$ITEST_DIR/prometheus
PROM_LOG=$ITEST_DIR/prometheus.log
mkdir -p "$PROM_DIR/data"
cat >"$PROM_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: zsnap
    static_configs:
      - targets: ["$METRICS_ADDR"]
EOF
prom__ready() {
  kill -0 "$PROM_PID" 2>/dev/null || return 99
  curl -fsS --max-time 2 "http://$PROM_ADDR/-/ready" >/dev/null
}
prom_stop() {
  [[ -n ${PROM_PID:-} ]] || return 0
  itest_kill_pid "$PROM_PID" 15
  PROM_PID=
}
itest_on_exit prom_stop
for attempt in 1 2 3; do
  PROM_ADDR=127.0.0.1:$(itest_free_port) || itest_die "no free port"
  prometheus --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
    --web.listen-address="$PROM_ADDR" --log.level=warn >>"$PROM_LOG" 2>&1 &
  PROM_PID=$!
  itest_track_pid "$PROM_PID"
  if itest_wait_for 60 "prometheus on $PROM_ADDR" prom__ready; then break; fi
  itest_log "prometheus attempt $attempt failed; log tail:"
  tail -n 10 "$PROM_LOG" >&2
  prom_stop
done
[[ -n ${PROM_PID:-} ]] || itest_die "prometheus did not start (log: $PROM_LOG)"
itest_log "prometheus pid $PROM_PID on $PROM_ADDR"

# prom_query EXPR: the first result's value of an instant query ("" if none).
prom_query() {
  curl -fsS --max-time 5 -G "http://$PROM_ADDR/api/v1/query" --data-urlencode "query=$1" |
    jq -r 'if .status == "success" and (.data.result | length) > 0
           then .data.result[0].value[1] else empty end'
}
prom__has() { [[ -n $(prom_query "$1") ]]; }

itest_wait_for 60 'up{job="zsnap"} == 1' prom__has 'up{job="zsnap"} == 1'
itest_check_eq prometheus-scrapes-zsnap 1 "$(prom_query 'up{job="zsnap"}')"
itest_wait_for 30 "the gRPC duration series in prometheus" prom__has \
  "${G}_count{job=\"zsnap\",method=\"Prepare\",code=\"OK\"}"
itest_check_eq prometheus-has-grpc-prepare-count "$prepares" \
  "$(prom_query "${G}_count{job=\"zsnap\",method=\"Prepare\",code=\"OK\"}")"
itest_check_match prometheus-computes-grpc-quantile '^[0-9.e+-]+$' \
  "$(prom_query "histogram_quantile(0.9, sum by (le) (${G}_bucket{job=\"zsnap\",method=\"Prepare\"}))")"
itest_check_eq prometheus-sees-build-info 1 "$(prom_query 'zsnap_build_info{job="zsnap"}')"
itest_check_eq prometheus-sees-remote-layers "$NLAYERS" \
  "$(prom_query 'sum(zsnap_layers_total{job="zsnap",outcome="ok"})')"
itest_check_match prometheus-computes-stage-quantile '^[0-9.e+-]+$' \
  "$(prom_query 'histogram_quantile(0.5, sum by (le) (zsnap_layer_stage_duration_seconds_bucket{job="zsnap",stage="total"}))')"

# --- the history survives a restart -------------------------------------------------------
ITEST_CURRENT=restart
BEFORE=$("$ZSNAP_BIN" stats --root "$ZSNAP_ROOT" --json)
zsnap_stop
itest_check stats-while-stopped "$ZSNAP_BIN" stats --root "$ZSNAP_ROOT"
start_zsnap || itest_die "zsnap did not restart (log: $ZSNAP_LOG)"
itest_check_eq stats-json-after-restart "$BEFORE" "$("$ZSNAP_BIN" stats --root "$ZSNAP_ROOT" --json)"
TABLE=$("$ZSNAP_BIN" stats --config "$ZSNAP_CONFIG")
itest_check_match stats-table-lists-fixture '^2026-11-18 11:06:40 +fixture/newest:v1 +ok +1/1 ' "$TABLE"
itest_check_match stats-table-newest-first " +ok +$NLAYERS/$NLAYERS " "$(sed -n 2p <<<"$TABLE")"
itest_check_eq stats-kept-newest-3 "remote fixture/newest:v1 fixture/middle:v1" \
  "$("$ZSNAP_BIN" stats --root "$ZSNAP_ROOT" --json |
    jq -r '[.[].image | if startswith("fixture/") then . else "remote" end] | join(" ")')"
itest_check metrics-served-after-restart test "$(sample zsnap_layers_in_flight)" = 0

itest_report
