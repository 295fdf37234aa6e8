#!/usr/bin/env bash
# The image tier (`scripts/test --image`): builds deploy/Dockerfile with image.sh and runs the
# image with podman.
#   1. Inside the container, `triage run --input` on the sample tickets and the labelled corpus
#      (tests/data/tickets.jsonl), with the mounted catalogue and with the built-in one, prints
#      byte for byte what the binary built outside prints.
#   2. The containerised worker, started with the image's own CMD (config and catalogue mounted
#      read-only, read-only root file system, uid 10001, as deploy/k8s runs it), consumes from a
#      Kafka broker of this test and posts to a Request Tracker of this test: tickets created
#      in RT through its REST 2.0 API are produced to the input topic; every decision on the
#      decisions topic equals the outside binary's, every ticket with a symptom ends with
#      exactly one Comment carrying the note and its tags in the Tags field, tickets without one
#      get no comment, nothing is a Correspond; /readyz answers 200; SIGTERM (podman stop)
#      ends it with status 0.
# Prints the image's figures at the end. Its broker and RT have ports and state dirs of their
# own (below), so it runs beside the default suite's.
#
# Environment (defaults in brackets):
#   TRIAGE_IMAGE_KAFKA_PORT  [19312]  TRIAGE_IMAGE_KAFKA_DIR  [/tmp/triage-kafka-image]
#   TRIAGE_IMAGE_RT_PORT     [18581]  TRIAGE_IMAGE_RT_DIR     [/tmp/triage-rt-image]
#   TRIAGE_IMAGE_KEEP=1      leave the broker, RT and the container's work dir afterwards
#   and image.sh's (TRIAGE_IMAGE_DIR, TRIAGE_IMAGE_JOBS, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ $# -gt 0 ]]; then
  echo "usage: deploy/image/test.sh (or scripts/test --image); no arguments" >&2
  exit 2
fi
REPO=$PWD

step() { printf '\n==> %s\n' "$*" >&2; }
fail() {
  printf 'image test FAILED: %s\n' "$*" >&2
  exit 1
}

export KAFKA_PORT=${TRIAGE_IMAGE_KAFKA_PORT:-19312}
export TRIAGE_KAFKA_DIR=${TRIAGE_IMAGE_KAFKA_DIR:-/tmp/triage-kafka-image}
export KAFKA_SASL_SSL_PORT=off
export RT_PORT=${TRIAGE_IMAGE_RT_PORT:-18581}
export TRIAGE_RT_DIR=${TRIAGE_IMAGE_RT_DIR:-/tmp/triage-rt-image}
image_sh=deploy/image/image.sh
container=triage-image-test-$$
work=$(mktemp -d /tmp/triage-image-test.XXXXXX)
chmod 0755 "$work"

cleanup() {
  "$image_sh" podman rm -f -t 5 "$container" >/dev/null 2>&1 || true
  if [[ ${TRIAGE_IMAGE_KEEP:-0} != 1 ]]; then
    deploy/rt/rt.sh stop >&2 || true
    deploy/kafka/kafka.sh stop >&2 || true
    rm -rf "$work"
  else
    echo "kept: $work, the broker ($TRIAGE_KAFKA_DIR) and RT ($TRIAGE_RT_DIR)" >&2
  fi
}
trap cleanup EXIT

step "building the image (deploy/image/image.sh build)"
image_env=$("$image_sh" build)
while IFS= read -r line; do
  if [[ $line == TRIAGE_IMAGE*=* ]]; then export "${line?}"; fi
done <<<"$image_env"
image=${TRIAGE_IMAGE:?image.sh build printed no image}

step "building the binary outside the image"
cargo build --release --locked -p triage --bin triage
bin="${CARGO_TARGET_DIR:-target}/release/triage"

in_image() {
  "$image_sh" podman run --rm --read-only \
    -v "$REPO/samples:/in/samples:ro" -v "$REPO/tests/data:/in/data:ro" \
    -v "$REPO/patterns:/etc/triage/patterns:ro" "$image" "$@"
}

step "the same decisions inside the container as outside"
for input in samples/tickets.jsonl tests/data/tickets.jsonl; do
  inside=/in/${input#tests/}
  for catalogue in mounted built-in; do
    args=()
    [[ $catalogue == mounted ]] && args=(--patterns patterns)
    "$bin" run --input "$input" "${args[@]}" >"$work/outside.jsonl"
    [[ $catalogue == mounted ]] && args=(--patterns /etc/triage/patterns)
    in_image run --input "$inside" "${args[@]}" >"$work/inside.jsonl"
    [[ -s $work/outside.jsonl ]] || fail "no decisions outside for $input"
    cmp "$work/outside.jsonl" "$work/inside.jsonl" ||
      fail "$input ($catalogue catalogue): the container's decisions differ from the binary's"
    echo "$input, $catalogue catalogue: $(wc -l <"$work/inside.jsonl") decisions, identical ($(sha256sum <"$work/inside.jsonl" | cut -c1-16))" >&2
  done
done
in_image --version >&2

step "a Kafka broker (port $KAFKA_PORT) and Request Tracker (port $RT_PORT) for this test"
kafka_env=$(deploy/kafka/kafka.sh start)
bootstrap=$(sed -n 's/^KAFKA_BOOTSTRAP_SERVERS=//p' <<<"$kafka_env")
[[ -n $bootstrap ]] || fail "kafka.sh start printed no address"
rt_start=$SECONDS
rt_env=$(deploy/rt/rt.sh start)
rt_start_s=$((SECONDS - rt_start))
rt_url=$(sed -n 's/^RT_URL=//p' <<<"$rt_env")
rt_token_file=$(sed -n 's/^RT_TOKEN_FILE=//p' <<<"$rt_env")
rt_admin_token_file=$(sed -n 's/^RT_ADMIN_TOKEN_FILE=//p' <<<"$rt_env")
[[ -n $rt_url && -r $rt_token_file && -r $rt_admin_token_file ]] || fail "rt.sh start printed no RT_URL and token files"
echo "broker $bootstrap, RT $rt_url (RT ready in $rt_start_s s)" >&2

run_id=$(date +%s)-$$
topic_in=image-tickets-$run_id
topic_decisions=image-decisions-$run_id
topic_dead=image-dead-letters-$run_id
for t in "$topic_in" "$topic_decisions" "$topic_dead"; do
  deploy/kafka/kafka.sh topics --create --topic "$t" --partitions 2 >/dev/null
done

step "tickets created in RT (REST 2.0), produced to $topic_in"
# The sample tickets and a few that match no symptom; the input records carry RT's ids.
TICKETS_IN="$work/tickets.jsonl" RT_URL=$rt_url RT_ADMIN_TOKEN_FILE=$rt_admin_token_file \
  python3 deploy/image/rt_check.py create samples/tickets.jsonl
n=$(wc -l <"$work/tickets.jsonl")
# key<TAB>value: keyed by ticket id, as triage ingest produces them.
python3 -c '
import json, sys
for line in open(sys.argv[1]):
    print(json.loads(line)["id"] + "\t" + line.rstrip("\n"))
' "$work/tickets.jsonl" |
  deploy/kafka/kafka.sh produce --topic "$topic_in" --property parse.key=true \
    --property "key.separator=$(printf '\t')" >/dev/null
"$bin" run --input "$work/tickets.jsonl" --patterns patterns >"$work/expected.jsonl"
echo "$n tickets in RT and on the input topic" >&2

step "the containerised worker: $image, its own CMD, consuming from the broker and posting to RT"
mkdir -p "$work/config"
server_port=$((KAFKA_PORT + 86))
cat >"$work/config/triage.toml" <<EOF
[kafka]
bootstrap_servers = "$bootstrap"
group_id = "triage-image-$run_id"
input_topic = "$topic_in"
decisions_topic = "$topic_decisions"
dead_letter_topic = "$topic_dead"

[worker]
retry_initial_ms = 100
retry_max_ms = 2000

[sink.rt]
base_url = "$rt_url"
token_env = "RT_TOKEN"
timeout_ms = 5000
requests_per_minute = 6000

[server]
listen = "127.0.0.1:$server_port"
EOF
chmod -R a+rX "$work/config"
RT_TOKEN=placeholder "$bin" run --check-config "$work/config/triage.toml" >/dev/null
# The token reaches the container through the environment, never on a command line.
RT_TOKEN=$(cat "$rt_token_file")
export RT_TOKEN
worker_start=$SECONDS
"$image_sh" podman run -d --name "$container" --read-only -e RT_TOKEN \
  -v "$work/config:/etc/triage/config:ro" -v "$REPO/patterns:/etc/triage/patterns:ro" \
  "$image" >/dev/null
unset RT_TOKEN

# Every decision on the decisions topic, as the binary outside decides it.
deploy/kafka/kafka.sh consume --topic "$topic_decisions" --from-beginning --max-messages "$n" \
  --timeout-ms 180000 >"$work/decisions.jsonl" 2>"$work/consume.log" || true
got=$(wc -l <"$work/decisions.jsonl")
if [[ $got -ne $n ]]; then
  "$image_sh" podman logs --tail 40 "$container" >&2 || true
  fail "$got of $n decisions on $topic_decisions"
fi
python3 - "$work/expected.jsonl" "$work/decisions.jsonl" <<'EOF' || fail "the container's decisions on the topic differ from the binary's"
import json, sys
expected = {json.loads(l)["id"]: json.loads(l) for l in open(sys.argv[1])}
bad = 0
for line in open(sys.argv[2]):
    d = json.loads(line)
    d.pop("source", None)
    if d != expected.get(d["id"]):
        print(f"ticket {d['id']}: topic {d} != outside {expected.get(d['id'])}", file=sys.stderr)
        bad += 1
sys.exit(1 if bad else 0)
EOF
echo "$n decisions on $topic_decisions, equal to the outside binary's (without the source field)" >&2

# RT: one Comment with the note per ticket with a symptom, its tags; nothing else.
RT_URL=$rt_url RT_ADMIN_TOKEN_FILE=$rt_admin_token_file \
  python3 deploy/image/rt_check.py check "$work/expected.jsonl" ||
  fail "Request Tracker does not hold what the container should have posted"
worker_s=$((SECONDS - worker_start))

ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$server_port/readyz" || true)
[[ $ready == 200 ]] || fail "/readyz of the containerised worker answered $ready"
"$image_sh" podman stop -t 40 "$container" >/dev/null
status=$("$image_sh" podman inspect --format '{{.State.ExitCode}}' "$container")
[[ $status == 0 ]] || {
  "$image_sh" podman logs --tail 40 "$container" >&2
  fail "the worker exited with status $status after SIGTERM"
}
echo "worker: /readyz 200, all of it in $worker_s s from its start; SIGTERM: exit status 0" >&2

step "figures"
echo "image: $image, ${TRIAGE_IMAGE_SIZE_MB} MB; deploy/Dockerfile built in ${TRIAGE_IMAGE_BUILD_S} s (base images: ${TRIAGE_IMAGE_BASES_S} s; last debootstrap ${TRIAGE_IMAGE_DEBOOTSTRAP_S:-?} s); RT ready in $rt_start_s s"
echo "image test: passed"
