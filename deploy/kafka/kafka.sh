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
KAFKA_SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-$((KAFKA_PORT + 2))}
KAFKA_SASL_USERNAME=${KAFKA_SASL_USERNAME:-triage}
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
# The SASL_SSL listener: TLS with a CA made here, SCRAM-SHA-512 with a generated password.
SECURE_BOOTSTRAP="$HOST:$KAFKA_SASL_SSL_PORT"
SASL_MECHANISM=SCRAM-SHA-512
TLS_DIR="$STATE_DIR/tls"
CA_PEM="$TLS_DIR/ca.pem"
CA_KEY="$TLS_DIR/ca.key"
SERVER_KEYSTORE="$TLS_DIR/server-keystore.pem"
SASL_PASSWORD_FILE="$STATE_DIR/sasl-password"
SECURE_CLIENT_PROPS="$STATE_DIR/client-sasl-ssl.properties"
SCRAM_STAMP="$STATE_DIR/.scram-user"

secure_on() { [[ $KAFKA_SASL_SSL_PORT != off ]]; }

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
                   prints on stdout, first, the plaintext listener:
                     KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP
                   then the SASL_SSL listener (unless KAFKA_SASL_SSL_PORT=off):
                     KAFKA_SASL_SSL_BOOTSTRAP_SERVERS=$SECURE_BOOTSTRAP
                     KAFKA_SSL_CA_LOCATION=$CA_PEM
                     KAFKA_SASL_MECHANISM=$SASL_MECHANISM
                     KAFKA_SASL_USERNAME=$KAFKA_SASL_USERNAME
                     KAFKA_SASL_PASSWORD_FILE=$SASL_PASSWORD_FILE
                   one VARIABLE=value a line, for \`export\` (progress goes to
                   stderr). The password itself is never printed. Reuses a broker already running
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

Security: besides the plaintext listener, the broker has a SASL_SSL listener
(TLS, SCRAM-SHA-512), for testing clients the way production clusters are
reached. On the first start the script makes, in the state dir (mode 0600):
a CA (tls/ca.pem, tls/ca.key), the broker's key and certificate signed by it
for 127.0.0.1 and localhost (tls/server-keystore.pem, a PEM keystore), a
random password (sasl-password), and the SCRAM user KAFKA_SASL_USERNAME with
that password; and the Java tools' client properties for that listener
(client-sasl-ssl.properties), e.g.
  $PROG run org.apache.kafka.tools.TopicCommand --list \\
    --bootstrap-server $SECURE_BOOTSTRAP --command-config $SECURE_CLIENT_PROPS
The password reaches the broker through a file, never a command line. The
broker's certificate is made again when it expires within a day.

Environment (defaults in brackets):
  KAFKA_PORT             client listener port on $HOST [19092]
  KAFKA_CONTROLLER_PORT  KRaft controller listener port [KAFKA_PORT+1]
  KAFKA_SASL_SSL_PORT    SASL_SSL listener port, or "off" for none [KAFKA_PORT+2]
  KAFKA_SASL_USERNAME    the SCRAM-SHA-512 user made for clients [triage]
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
  state   $STATE_DIR/{server.properties,data/,kafka.log,kafka.pid,
          tls/,sasl-password,client-sasl-ssl.properties}

CI example:
  deploy/kafka/kafka.sh start >kafka.env  # KAFKA_BOOTSTRAP_SERVERS=... first
  while IFS= read -r line; do export "\$line"; done <kafka.env
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
  local secure_listener="" secure_props=""
  if secure_on; then
    secure_listener=",SASL_SSL://$HOST:$KAFKA_SASL_SSL_PORT"
    secure_props="
# --- SASL_SSL listener: TLS (PEM keystore made by kafka.sh), SCRAM-SHA-512 users
sasl.enabled.mechanisms=$SASL_MECHANISM
listener.name.sasl_ssl.sasl.enabled.mechanisms=$SASL_MECHANISM
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$SERVER_KEYSTORE
listener.name.sasl_ssl.ssl.client.auth=none
"
  fi
  cat >"$SERVER_PROPS" <<EOF
# Generated by deploy/kafka/kafka.sh on every start: edits are overwritten.
# Use KAFKA_SERVER_PROPERTIES_EXTRA to add or override settings.

# --- KRaft: one node that is both broker and controller
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER

# --- Listeners, loopback only
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT$secure_listener
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT$secure_listener
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
$secure_props
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

# --- The SASL_SSL listener's CA, certificate, password and user ---------------------------

# A CA and a broker certificate for 127.0.0.1/localhost, made once per state dir (again
# when the certificate expires within a day). Keys stay in the state dir, mode 0600.
make_tls() {
  command -v openssl >/dev/null 2>&1 || die "openssl is needed for the SASL_SSL listener (or set KAFKA_SASL_SSL_PORT=off)"
  if [[ -s $CA_PEM && -s $SERVER_KEYSTORE ]] &&
    openssl x509 -noout -checkend 86400 -in "$SERVER_KEYSTORE" >/dev/null 2>&1; then
    return 0
  fi
  log "making a CA and a broker certificate in $TLS_DIR"
  local tmp="$TLS_DIR.tmp.$$" err serial
  rm -rf "$tmp"
  mkdir -p "$tmp"
  chmod 700 "$tmp"
  err="$tmp/openssl.log"
  serial="0x$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=critical,CA:FALSE' \
    'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' >"$tmp/server.ext"
  if ! (
    umask 077
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 825 \
      -subj "/CN=triage local test CA $(date -u +%Y%m%d%H%M%S)" \
      -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' \
      -keyout "$tmp/ca.key" -out "$tmp/ca.pem" &&
      openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=$HOST" \
        -keyout "$tmp/server.key" -out "$tmp/server.csr" &&
      openssl x509 -req -sha256 -days 825 -in "$tmp/server.csr" -CA "$tmp/ca.pem" \
        -CAkey "$tmp/ca.key" -set_serial "$serial" -extfile "$tmp/server.ext" \
        -out "$tmp/server.pem" &&
      cat "$tmp/server.key" "$tmp/server.pem" >"$tmp/server-keystore.pem"
  ) >"$err" 2>&1; then
    cat "$err" >&2
    rm -rf "$tmp"
    die "openssl could not make the CA and the broker certificate (see above)"
  fi
  rm -f "$tmp/server.csr" "$tmp/server.ext" "$tmp/server.key" "$tmp/server.pem" "$err"
  chmod 644 "$tmp/ca.pem"
  chmod 755 "$tmp"
  rm -rf "$TLS_DIR"
  mv "$tmp" "$TLS_DIR"
}

# The SCRAM user's password: random, made once, kept in a 0600 file (one line).
make_password() {
  [[ -s $SASL_PASSWORD_FILE ]] && return 0
  (
    umask 077
    head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$SASL_PASSWORD_FILE.tmp"
    printf '\n' >>"$SASL_PASSWORD_FILE.tmp"
  )
  mv "$SASL_PASSWORD_FILE.tmp" "$SASL_PASSWORD_FILE"
  rm -f "$SCRAM_STAMP"
}

# The Java tools' settings for the SASL_SSL listener (it holds the password: mode 0600).
write_secure_client_props() {
  local pw
  pw=$(head -n 1 "$SASL_PASSWORD_FILE")
  (
    umask 077
    cat >"$SECURE_CLIENT_PROPS.tmp" <<EOF
# Generated by deploy/kafka/kafka.sh: Java clients of the SASL_SSL listener $SECURE_BOOTSTRAP.
security.protocol=SASL_SSL
sasl.mechanism=$SASL_MECHANISM
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_SASL_USERNAME" password="$pw";
ssl.truststore.type=PEM
ssl.truststore.location=$CA_PEM
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
  )
  mv "$SECURE_CLIENT_PROPS.tmp" "$SECURE_CLIENT_PROPS"
}

# Create (or reset) the SCRAM user through the plaintext listener, then wait until the
# SASL_SSL listener lets it in. The password goes to the tool in a 0600 file, never on its
# command line. Done once per user and password (stamp file).
ensure_scram_user() {
  local stamp_value
  stamp_value="$KAFKA_SASL_USERNAME $(cksum <"$SASL_PASSWORD_FILE")"
  if [[ -f $SCRAM_STAMP && "$(cat "$SCRAM_STAMP")" == "$stamp_value" ]]; then
    return 0
  fi
  local add="$STATE_DIR/.scram-add.properties" pw out
  pw=$(head -n 1 "$SASL_PASSWORD_FILE")
  (
    umask 077
    printf '%s=iterations=8192,password=%s\n' "$SASL_MECHANISM" "$pw" >"$add"
  )
  log "creating the SCRAM user '$KAFKA_SASL_USERNAME' ($SASL_MECHANISM)"
  if ! out=$(run_tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$ADMIN_PROPS" --alter --entity-type users \
    --entity-name "$KAFKA_SASL_USERNAME" --add-config-file "$add" 2>&1); then
    rm -f "$add"
    printf '%s\n' "${out//"$pw"/***}" >&2
    fail_start "could not create the SCRAM user '$KAFKA_SASL_USERNAME'"
  fi
  rm -f "$add"
  # The credential reaches the listener through the metadata log: wait for a real login.
  local deadline=$((SECONDS + 30)) probe_log="$STATE_DIR/.secure-probe.log"
  until run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$SECURE_BOOTSTRAP" \
    --command-config "$SECURE_CLIENT_PROPS" --list >/dev/null 2>"$probe_log"; do
    if ((SECONDS >= deadline)); then
      cat "$probe_log" >&2
      fail_start "the SASL_SSL listener $SECURE_BOOTSTRAP did not let '$KAFKA_SASL_USERNAME' in within 30 s"
    fi
    sleep 0.5
  done
  rm -f "$probe_log"
  printf '%s\n' "$stamp_value" >"$SCRAM_STAMP"
}

# What clients need to reach the SASL_SSL listener, one VARIABLE=value a line.
print_secure_env() {
  secure_on || return 0
  printf '%s\n' \
    "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS=$SECURE_BOOTSTRAP" \
    "KAFKA_SSL_CA_LOCATION=$CA_PEM" \
    "KAFKA_SASL_MECHANISM=$SASL_MECHANISM" \
    "KAFKA_SASL_USERNAME=$KAFKA_SASL_USERNAME" \
    "KAFKA_SASL_PASSWORD_FILE=$SASL_PASSWORD_FILE"
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
  if secure_on; then
    check_port_var KAFKA_SASL_SSL_PORT "$KAFKA_SASL_SSL_PORT"
    [[ $KAFKA_SASL_SSL_PORT != "$KAFKA_PORT" && $KAFKA_SASL_SSL_PORT != "$KAFKA_CONTROLLER_PORT" ]] ||
      die "KAFKA_SASL_SSL_PORT must differ from KAFKA_PORT and KAFKA_CONTROLLER_PORT"
    [[ $KAFKA_SASL_USERNAME =~ ^[A-Za-z0-9._-]+$ ]] ||
      die "KAFKA_SASL_USERNAME may hold only letters, digits, '.', '_' and '-'"
  fi
  check_java
  cmd_fetch
  mkdir -p "$STATE_DIR"
  lock 9 "$STATE_DIR/.lock"

  local pid t0=$SECONDS
  if pid=$(running_pid); then
    log "broker already running from $STATE_DIR (pid $pid); checking it answers"
    wait_until_ready "$pid"
    if secure_on; then
      grep -q "SASL_SSL://$SECURE_BOOTSTRAP" "$SERVER_PROPS" ||
        die "the running broker has no SASL_SSL listener on $SECURE_BOOTSTRAP; restart it ('$PROG stop', then '$PROG start')"
      make_password
      write_secure_client_props
      ensure_scram_user
    fi
    log "reusing the running broker on $BOOTSTRAP"
    echo "KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP"
    print_secure_env
    return 0
  fi
  rm -f "$PID_FILE"
  local port
  local -a ports=("$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT")
  secure_on && ports+=("$KAFKA_SASL_SSL_PORT")
  for port in "${ports[@]}"; do
    if port_open "$port"; then
      die "$HOST:$port is already in use by another process (not a broker of $STATE_DIR); stop it or set KAFKA_PORT/KAFKA_CONTROLLER_PORT/KAFKA_SASL_SSL_PORT"
    fi
  done

  if secure_on; then
    make_tls
    make_password
    write_secure_client_props
  fi
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
  if secure_on; then ensure_scram_user; fi
  log "broker up (pid $pid) after $((SECONDS - t0)) s"
  echo "KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP"
  print_secure_env
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
