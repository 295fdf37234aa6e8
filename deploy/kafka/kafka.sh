#!/usr/bin/env bash
# A real single-node Apache Kafka 4.x broker (KRaft, broker+controller in one
# JVM) on 127.0.0.1 for developers and CI. The jars come from the Maven
# registry (see pom.xml beside this file) into a cache outside the source tree.
# Run `kafka.sh --help` for the commands and the environment variables.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
POM="$SCRIPT_DIR/pom.xml"
PROG=$(basename "$0")

KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
STATE_DIR=${TRIAGE_KAFKA_DIR:-/tmp/triage-kafka}
CACHE_DIR=${KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/triage/kafka-$KAFKA_VERSION}
LIBS_DIR=${KAFKA_LIBS_DIR:-$CACHE_DIR/libs}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
KAFKA_JVM_OPTS=${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}
KAFKA_OPTS=${KAFKA_OPTS:-}
# Short-lived CLI JVMs: a small heap and the C1 compiler only start fastest.
KAFKA_TOOLS_OPTS=${KAFKA_TOOLS_OPTS:--Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true}
KAFKA_SERVER_PROPERTIES_EXTRA=${KAFKA_SERVER_PROPERTIES_EXTRA:-}
KAFKA_MVN_ARGS=${KAFKA_MVN_ARGS:-}

BOOTSTRAP="$HOST:$KAFKA_PORT"
SERVER_PROPS="$STATE_DIR/server.properties"
ADMIN_PROPS="$STATE_DIR/admin.properties"
BROKER_LOG4J="$STATE_DIR/log4j2.properties"
TOOLS_LOG4J="$STATE_DIR/tools-log4j2.properties"
DATA_DIR="$STATE_DIR/data"
LOG_FILE="$STATE_DIR/kafka.log"
PID_FILE="$STATE_DIR/kafka.pid"
STAMP="$LIBS_DIR/.triage-kafka-complete"

if [[ -n ${JAVA_HOME:-} && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA=java
fi

usage() {
  cat <<EOF
Usage: $PROG COMMAND [ARGS...]

A real single-node Apache Kafka $KAFKA_VERSION broker in KRaft mode (one JVM that
is both broker and controller) listening on $HOST only, for local
development and CI. No ZooKeeper, no Docker: the broker's jars are fetched
from the Maven registry with \`mvn\` (deploy/kafka/pom.xml) into a cache
outside the source tree and run with \`java\` (17 or newer).

Commands:
  fetch            Fetch the jars into the cache (idempotent; reuses the cache
                   when it is complete and pom.xml has not changed).
  start            Fetch if needed, write the config into the state dir, format
                   the storage (first time only, random cluster id), start the
                   broker in the background and wait until it answers a real
                   metadata request (timeout \$KAFKA_START_TIMEOUT s). On success
                   prints exactly one line on stdout:
                     KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP
                   (progress goes to stderr). Reuses a broker already running
                   from the same state dir. On failure prints the tail of the
                   broker log and stops what it started.
  stop             Stop the broker: SIGTERM, then SIGKILL after
                   \$KAFKA_STOP_TIMEOUT s. Idempotent.
  status           Say whether the broker runs (exit 0) or not (exit 3).
  topics ARGS...   Run the topic tool (org.apache.kafka.tools.TopicCommand)
                   against the broker, e.g.
                     $PROG topics --create --topic t1 --partitions 3
                     $PROG topics --describe --topic t1
                     $PROG topics --list
  produce ARGS...  Console producer against the broker (reads stdin), e.g.
                     printf 'a\\nb\\n' | $PROG produce --topic t1
  consume ARGS...  Console consumer against the broker, e.g.
                     $PROG consume --topic t1 --from-beginning --max-messages 2
  run CLASS ARGS.. Run any main class from the Kafka jars (no bootstrap added).
  logs [N]         Print the last N (default 100) lines of the broker log.
  clean            Stop the broker and delete the state dir (all topics/data).
  -h, --help       This help.

Topics are never auto-created (auto.create.topics.enable=false): tests create
their own. Data survives stop/start; use \`clean\` for a fresh broker.

Environment (defaults in brackets):
  KAFKA_PORT             client listener port on $HOST [19092]
  KAFKA_CONTROLLER_PORT  KRaft controller listener port [KAFKA_PORT+1]
  TRIAGE_KAFKA_DIR       state dir: config, data, log, pid [/tmp/triage-kafka]
  KAFKA_VERSION          Kafka version fetched from the registry [4.1.1]
  KAFKA_CACHE_DIR        jar cache [\${XDG_CACHE_HOME:-\$HOME/.cache}/triage/kafka-\$KAFKA_VERSION]
  KAFKA_LIBS_DIR         use this existing dir of Kafka jars (e.g. an unpacked
                         release's libs/) instead of fetching [\$KAFKA_CACHE_DIR/libs]
  KAFKA_START_TIMEOUT    seconds to wait for the broker to answer [90]
  KAFKA_STOP_TIMEOUT     seconds between SIGTERM and SIGKILL [30]
  KAFKA_HEAP_OPTS        broker heap [-Xms256m -Xmx512m]
  KAFKA_JVM_OPTS         broker JVM flags [G1, short pauses, headless]
  KAFKA_OPTS             extra broker JVM flags, appended []
  KAFKA_TOOLS_OPTS       JVM flags for the CLI tools [-Xmx256m, serial GC, C1 only]
  KAFKA_SERVER_PROPERTIES_EXTRA
                         lines appended to server.properties (they override) []
  KAFKA_MVN_ARGS         extra arguments for mvn, e.g. -o or -s settings.xml []
  JAVA_HOME              Java to use [java on PATH]

Files:
  cache   $LIBS_DIR
  state   $STATE_DIR/{server.properties,data/,kafka.log,kafka.pid}

CI example:
  deploy/kafka/kafka.sh start            # prints KAFKA_BOOTSTRAP_SERVERS=...
  export KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP
  ... run tests ...
  deploy/kafka/kafka.sh stop
EOF
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_port_var() {
  local name=$1 value=$2
  if ! [[ $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
    die "$name must be a TCP port number, got '$value'"
  fi
}

# Serialise concurrent invocations on one file (no-op where flock is missing).
lock() {
  local fd=$1 file=$2
  command -v flock >/dev/null 2>&1 || return 0
  eval "exec $fd>\"\$file\""
  flock -w 600 "$fd" || die "timed out waiting for the lock $file"
}

cache_key() { printf 'kafka=%s pom=%s\n' "$KAFKA_VERSION" "$(cksum <"$POM")"; }

libs_ready() {
  if [[ -n ${KAFKA_LIBS_DIR:-} ]]; then
    compgen -G "$LIBS_DIR/kafka_2.13-*.jar" >/dev/null
  else
    [[ -f $STAMP && "$(cat "$STAMP")" == "$(cache_key)" ]]
  fi
}

cmd_fetch() {
  if libs_ready; then
    log "jars for Kafka $KAFKA_VERSION already in $LIBS_DIR"
    return 0
  fi
  [[ -z ${KAFKA_LIBS_DIR:-} ]] ||
    die "KAFKA_LIBS_DIR=$KAFKA_LIBS_DIR holds no kafka_2.13-*.jar"
  command -v mvn >/dev/null 2>&1 || die "mvn (Apache Maven) is needed to fetch the Kafka jars"
  mkdir -p "$CACHE_DIR"
  lock 8 "$CACHE_DIR/.lock"
  if libs_ready; then # fetched by a concurrent run while we waited
    exec 8>&-
    return 0
  fi
  local tmp="$CACHE_DIR/libs.tmp.$$" start=$SECONDS
  local -a mvn_args=()
  [[ -z $KAFKA_MVN_ARGS ]] || read -r -a mvn_args <<<"$KAFKA_MVN_ARGS"
  rm -rf "$tmp"
  log "fetching Kafka $KAFKA_VERSION jars with mvn into $LIBS_DIR ..."
  # mvn's output is kept aside and shown (without its colour codes) on failure.
  if ! mvn -B -q -Dstyle.color=never -f "$POM" ${mvn_args[@]+"${mvn_args[@]}"} \
    dependency:copy-dependencies \
    -Dkafka.version="$KAFKA_VERSION" \
    -DincludeScope=runtime \
    -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
    sed $'s/\033\\[[0-9;]*m//g' "$tmp.log" >&2 || true
    rm -rf "$tmp" "$tmp.log"
    die "mvn could not fetch the Kafka $KAFKA_VERSION jars (see above)"
  fi
  rm -f "$tmp.log"
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || {
    rm -rf "$tmp"
    die "mvn finished but no kafka_2.13 jar was copied"
  }
  cache_key >"$tmp/.triage-kafka-complete"
  rm -rf "$LIBS_DIR"
  mv "$tmp" "$LIBS_DIR"
  exec 8>&-
  log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l | tr -d ' ') jars ($(du -sh "$LIBS_DIR" | cut -f1)) in $((SECONDS - start)) s"
}

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (install Java 17+ or set JAVA_HOME)"
  local v major
  v=$("$JAVA" -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n 1)
  major=${v%%.*}
  [[ $major == 1 ]] && major=$(cut -d. -f2 <<<"$v")
  [[ $major =~ ^[0-9]+$ ]] || die "cannot tell the version of $JAVA ('$v')"
  ((major >= 17)) || die "Kafka $KAFKA_VERSION needs Java 17 or newer; $JAVA is $v"
}

write_tools_config() {
  mkdir -p "$STATE_DIR"
  cat >"$TOOLS_LOG4J" <<'EOF'
# Generated by deploy/kafka/kafka.sh: logging of the CLI tools (warnings, stderr).
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
  cat >"$ADMIN_PROPS" <<'EOF'
# Generated by deploy/kafka/kafka.sh: admin client settings of the readiness probe.
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

write_config() {
  write_tools_config
  mkdir -p "$DATA_DIR"
  cat >"$SERVER_PROPS" <<EOF
# Generated by deploy/kafka/kafka.sh on every start: edits are overwritten.
# Use KAFKA_SERVER_PROPERTIES_EXTRA to add or override settings.

# --- KRaft: one node that is both broker and controller
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER

# --- Listeners, loopback only
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT

# --- Storage (data and KRaft metadata log)
log.dirs=$DATA_DIR

# --- Single node: everything replicated once, tests create their own topics
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# --- Small machine (2 cores)
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
EOF
  if [[ -n $KAFKA_SERVER_PROPERTIES_EXTRA ]]; then
    printf '\n# --- From KAFKA_SERVER_PROPERTIES_EXTRA\n%s\n' "$KAFKA_SERVER_PROPERTIES_EXTRA" >>"$SERVER_PROPS"
  fi
  cat >"$BROKER_LOG4J" <<'EOF'
# Generated by deploy/kafka/kafka.sh: broker logging, INFO to stdout (kafka.log).
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

# The java command line for a main class from the Kafka jars (tools' JVM
# flags), in the array TOOL_CMD.
tool_cmd() {
  local -a opts=()
  read -r -a opts <<<"$KAFKA_TOOLS_OPTS"
  [[ -f $TOOLS_LOG4J && -f $ADMIN_PROPS ]] || write_tools_config
  TOOL_CMD=("$JAVA" "${opts[@]}" -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$LIBS_DIR/*")
}

run_tool() {
  tool_cmd
  "${TOOL_CMD[@]}" "$@"
}

read_pid() {
  local pid
  [[ -f $PID_FILE ]] || return 1
  pid=$(tr -dc '0-9' <"$PID_FILE")
  [[ -n $pid ]] || return 1
  printf '%s\n' "$pid"
}

# Is PID alive and the broker of this state dir (not a recycled pid)?
is_our_broker() {
  local pid=$1 args
  kill -0 "$pid" 2>/dev/null || return 1
  args=$(ps -ww -o args= -p "$pid" 2>/dev/null) || return 1
  [[ $args == *kafka.Kafka*"$SERVER_PROPS"* ]]
}

running_pid() {
  local pid
  pid=$(read_pid) || return 1
  is_our_broker "$pid" || return 1
  printf '%s\n' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# A real request: list topics through the admin client (metadata request).
broker_answers() {
  local -a to=()
  port_open "$KAFKA_PORT" || return 1
  command -v timeout >/dev/null 2>&1 && to=(timeout 30)
  tool_cmd
  ${to[@]+"${to[@]}"} "${TOOL_CMD[@]}" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_PROPS" --list >/dev/null 2>&1
}

kill_broker() {
  local pid=$1 waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT * 10)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "broker (pid $pid) still up after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
}

fail_start() {
  log "error: $*"
  if [[ -f $LOG_FILE ]]; then
    log "last lines of $LOG_FILE:"
    tail -n 60 "$LOG_FILE" >&2 || true
  fi
  local pid
  if pid=$(running_pid); then
    log "stopping the broker that failed to come up (pid $pid)"
    kill_broker "$pid"
  fi
  rm -f "$PID_FILE"
  exit 1
}

wait_until_ready() {
  local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    is_our_broker "$pid" || fail_start "the broker (pid $pid) exited during startup"
    if port_open "$KAFKA_PORT" && broker_answers; then
      return 0
    fi
    ((SECONDS < deadline)) ||
      fail_start "the broker did not answer on $BOOTSTRAP within ${START_TIMEOUT}s (KAFKA_START_TIMEOUT)"
    sleep 0.3
  done
}

gen_cluster_id() {
  # Same shape as Kafka's Uuid.randomUuid(): 16 random bytes, URL-safe
  # base64 without padding, never starting with '-'.
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ ${#id} == 22 && $id != -* ]] && break
  done
  printf '%s\n' "$id"
}

cmd_start() {
  check_port_var KAFKA_PORT "$KAFKA_PORT"
  check_port_var KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
  [[ $KAFKA_PORT != "$KAFKA_CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
  check_java
  cmd_fetch
  mkdir -p "$STATE_DIR"
  lock 9 "$STATE_DIR/.lock"

  local pid t0=$SECONDS
  if pid=$(running_pid); then
    log "broker already running from $STATE_DIR (pid $pid); checking it answers"
    wait_until_ready "$pid"
    log "reusing the running broker on $BOOTSTRAP"
    echo "KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP"
    return 0
  fi
  rm -f "$PID_FILE"
  local port
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$port"; then
      die "$HOST:$port is already in use by another process (not a broker of $STATE_DIR); stop it or set KAFKA_PORT/KAFKA_CONTROLLER_PORT"
    fi
  done

  write_config
  [[ -f $LOG_FILE ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
  : >"$LOG_FILE"

  if [[ ! -f $DATA_DIR/meta.properties ]]; then
    local cid
    cid=$(gen_cluster_id)
    log "formatting $DATA_DIR (cluster id $cid)"
    if ! run_tool kafka.tools.StorageTool format --cluster-id "$cid" \
      --config "$SERVER_PROPS" --ignore-formatted >>"$LOG_FILE" 2>&1; then
      fail_start "formatting the storage failed"
    fi
  fi

  local -a heap=() jvm=() extra=()
  read -r -a heap <<<"$KAFKA_HEAP_OPTS"
  read -r -a jvm <<<"$KAFKA_JVM_OPTS"
  [[ -z $KAFKA_OPTS ]] || read -r -a extra <<<"$KAFKA_OPTS"
  log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (controller $HOST:$KAFKA_CONTROLLER_PORT), log $LOG_FILE"
  # nohup: survive the end of the calling shell; the lock fds are closed so
  # the broker does not hold them.
  nohup "$JAVA" "${heap[@]}" "${jvm[@]}" ${extra[@]+"${extra[@]}"} \
    -Dlog4j2.configurationFile="$BROKER_LOG4J" \
    -Dkafka.logs.dir="$STATE_DIR" \
    -cp "$LIBS_DIR/*" kafka.Kafka "$SERVER_PROPS" \
    </dev/null >>"$LOG_FILE" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  # Give ps a moment to show java's own command line.
  sleep 0.2
  wait_until_ready "$pid"
  log "broker up (pid $pid) after $((SECONDS - t0)) s"
  echo "KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP"
}

cmd_stop() {
  local pid
  mkdir -p "$STATE_DIR"
  lock 9 "$STATE_DIR/.lock"
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    log "broker not running (state dir $STATE_DIR)"
    return 0
  fi
  log "stopping broker (pid $pid)"
  kill_broker "$pid"
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  if pid=$(running_pid); then
    if port_open "$KAFKA_PORT"; then
      echo "running: pid $pid, $BOOTSTRAP, state dir $STATE_DIR"
    else
      echo "running but not (yet) listening: pid $pid, $BOOTSTRAP, state dir $STATE_DIR"
    fi
    return 0
  fi
  echo "not running (state dir $STATE_DIR)"
  return 3
}

require_broker() {
  libs_ready || die "the Kafka jars are not fetched yet; run '$PROG start'"
  port_open "$KAFKA_PORT" || die "nothing listens on $BOOTSTRAP; run '$PROG start'"
}

cmd_clean() {
  cmd_stop
  case $STATE_DIR in
  "" | / | "$HOME" | "$HOME/") die "refusing to delete '$STATE_DIR'" ;;
  esac
  rm -rf "$STATE_DIR"
  log "deleted $STATE_DIR"
}

main() {
  local cmd=${1:-}
  [[ $# -eq 0 ]] || shift
  case $cmd in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  topics)
    require_broker
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@"
    ;;
  produce)
    require_broker
    run_tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$BOOTSTRAP" "$@"
    ;;
  consume)
    require_broker
    run_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" "$@"
    ;;
  run)
    [[ $# -ge 1 ]] || die "usage: $PROG run MAIN_CLASS [ARGS...]"
    libs_ready || cmd_fetch
    run_tool "$@"
    ;;
  logs)
    [[ -f $LOG_FILE ]] || die "no broker log at $LOG_FILE"
    tail -n "${1:-100}" "$LOG_FILE"
    ;;
  clean) cmd_clean ;;
  -h | --help | help) usage ;;
  "")
    usage >&2
    exit 2
    ;;
  *)
    log "unknown command '$cmd'"
    usage >&2
    exit 2
    ;;
  esac
}

main "$@"
