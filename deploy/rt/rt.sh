#!/usr/bin/env bash
# A real Request Tracker 5 (Debian's packages) on 127.0.0.1 for developers and CI: a fresh
# SQLite instance with its own configuration, nothing under /etc touched. Run `rt.sh --help`
# for the commands and the environment variables.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=$(basename "$0")

HOST=127.0.0.1
RT_PORT=${RT_PORT:-18480}
STATE_DIR=${TRIAGE_RT_DIR:-/tmp/triage-rt}
RT_WORKERS=${RT_WORKERS:-2}
RT_BCRYPT_COST=${RT_BCRYPT_COST:-4}
RT_NUDGE_URL=${RT_NUDGE_URL:-}
RT_TAGS_FIELD=${RT_TAGS_FIELD:-Tags}
RT_NOTE_FIELD=${RT_NOTE_FIELD:-TriageNote}
RT_TRIAGE_USER=${RT_TRIAGE_USER:-triage}
START_TIMEOUT=${RT_START_TIMEOUT:-60}
STOP_TIMEOUT=${RT_STOP_TIMEOUT:-15}

PACKAGES=(request-tracker5 rt5-db-sqlite rt5-standalone)
RT_LIB=/usr/share/request-tracker5/lib
RT_SERVER=/usr/share/request-tracker5/libexec/rt-server
RT_SETUP=/usr/sbin/rt-setup-database-5

BASE_URL="http://$HOST:$RT_PORT"
SITE_CONFIG="$STATE_DIR/RT_SiteConfig.pm"
SITE_CONFIG_DIR="$STATE_DIR/RT_SiteConfig.d"
DB_FILE="$STATE_DIR/rt.sqlite"
INITDATA="$STATE_DIR/initialdata.pl"
LOG_FILE="$STATE_DIR/rt.log"
PID_FILE="$STATE_DIR/rt.pid"
TOKEN_FILE="$STATE_DIR/triage-token"
ADMIN_TOKEN_FILE="$STATE_DIR/admin-token"
TIMES_FILE="$STATE_DIR/times"

usage() {
  cat <<EOF
Usage: $PROG COMMAND

A real Request Tracker 5 from Debian's packages (request-tracker5, rt5-db-sqlite,
rt5-standalone), listening on $HOST only, for local development and CI. Its configuration,
SQLite database, log and credentials live in a state dir; nothing under /etc is changed (RT
reads its site configuration from RT_SITE_CONFIG and RT_SITE_CONFIG_DIR).

Commands:
  start    Install the packages when missing (apt-get, as root, non-interactive; debconf told
           not to create a database), then, on the first start, write the site configuration,
           create the SQLite database (bcrypt cost \$RT_BCRYPT_COST, low for tests) and load
           what triage needs:
             - a multi-value custom field "\$RT_TAGS_FIELD" on every queue's tickets;
             - a single-value custom field "\$RT_NOTE_FIELD" where triage claims a ticket
               before writing its note and records that the note is there;
             - a user "\$RT_TRIAGE_USER" that may see tickets and their comments, comment, and
               see and set those custom fields, with an auth token;
             - when RT_NUDGE_URL is set, a scrip that POSTs {"ticket": ID} there on every
               ticket create and reply (triage ingest's RT nudge), a hint to poll now;
           then start the server (Starlet, \$RT_WORKERS workers) in the background and wait
           until REST 2.0 answers. Prints on stdout, one VARIABLE=value a line:
             RT_URL=$BASE_URL
             RT_TOKEN_FILE=$TOKEN_FILE
             RT_ADMIN_TOKEN_FILE=$ADMIN_TOKEN_FILE
           The tokens are only ever written to those files (mode 0600), never printed.
           Reuses a server already running from the same state dir.
  stop     Stop the server (SIGTERM, then SIGKILL after \$RT_STOP_TIMEOUT s). Idempotent.
  status   Say whether the server runs (exit 0) or not (exit 3).
  logs [N] The last N (default 100) lines of the server log.
  clean    Stop the server and delete the state dir (the database with it).
  -h, --help

Environment (defaults in brackets):
  RT_PORT            port on $HOST [18480]
  TRIAGE_RT_DIR      state dir: config, database, log, pid, tokens [/tmp/triage-rt]
  RT_WORKERS         Starlet worker processes [2]
  RT_BCRYPT_COST     bcrypt cost of passwords and tokens [4; RT's own default is 12, which
                     costs about 0.2 s of CPU per authenticated request]
  RT_TAGS_FIELD      name of the tags custom field [Tags]
  RT_NOTE_FIELD      name of triage's note-claim custom field [TriageNote]
  RT_TRIAGE_USER     name of triage's user [triage]
  RT_NUDGE_URL       where the scrip POSTs on create/reply; no scrip when empty []
  RT_START_TIMEOUT   seconds to wait for REST 2.0 to answer [60]
  RT_STOP_TIMEOUT    seconds between SIGTERM and SIGKILL [15]

The figures of the last install and start are kept in $TIMES_FILE.
EOF
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

now_ms() { date +%s%3N; }

record_time() { printf '%s %s ms %s\n' "$1" "$2" "$(date -u +%FT%TZ)" >>"$TIMES_FILE"; }

lock() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$STATE_DIR/.lock"
  flock -w 600 9 || die "timed out waiting for the lock $STATE_DIR/.lock"
}

installed() {
  local p
  for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || return 1
  done
  [[ -x $RT_SERVER && -x $RT_SETUP ]]
}

cmd_install() {
  if installed; then
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || die "the packages ${PACKAGES[*]} are missing; install them as root (or run this as root)"
  command -v apt-get >/dev/null || die "the packages ${PACKAGES[*]} are missing and there is no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  # No database of dbconfig-common's: this script makes its own, in the state dir.
  echo "request-tracker5 request-tracker5/dbconfig-install boolean false" | debconf-set-selections
  local t0 apt_log
  t0=$(now_ms)
  apt_log=$(mktemp)
  log "installing ${PACKAGES[*]} (apt-get; about half a minute) ..."
  if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >"$apt_log" 2>&1; then
    log "apt-get install failed; trying again after apt-get update"
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } >"$apt_log" 2>&1; then
      tail -n 40 "$apt_log" >&2
      rm -f "$apt_log"
      die "could not install ${PACKAGES[*]}"
    fi
  fi
  rm -f "$apt_log"
  installed || die "apt-get finished but RT is not where it should be ($RT_SERVER, $RT_SETUP)"
  local ms=$(($(now_ms) - t0))
  mkdir -p "$STATE_DIR"
  record_time install "$ms"
  log "installed in $((ms / 1000)).$((ms % 1000 / 100)) s"
}

write_site_config() {
  mkdir -p "$SITE_CONFIG_DIR"
  cat >"$SITE_CONFIG" <<EOF
# Generated by deploy/rt/rt.sh on every start: edits are overwritten.
Set(\$rtname, 'triage-test');
Set(\$Organization, 'triage.test');
Set(\$CorrespondAddress, 'rt@triage.test');
Set(\$CommentAddress, 'rt-comment@triage.test');
Set(\$DatabaseType, 'SQLite');
Set(\$DatabaseName, '$DB_FILE');
Set(\$WebDomain, '$HOST');
Set(\$WebPort, $RT_PORT);
Set(\$WebPath, '');
Set(\$WebBaseURL, '$BASE_URL');
Set(\$BcryptCost, $RT_BCRYPT_COST);
Set(\$LogToSTDERR, 'warning');
Set(\$LogToSyslog, undef);
Set(\$LogToFile, undef);
Set(\$MailCommand, 'testfile');
Set(\$RestrictReferrer, 0);
1;
EOF
}

# Perl string literal (single quotes) of $1.
perl_quote() {
  local s=${1//\\/\\\\}
  printf "'%s'" "${s//\'/\\\'}"
}

write_initialdata() {
  local scrip=""
  if [[ -n $RT_NUDGE_URL ]]; then
    # On every create and reply: a hint to triage's RT source to poll now. It runs inside
    # the request that changed the ticket, so it waits at most 2 s and never fails it.
    scrip="
@Scrips = (
    map {
        {
            Description    => \"triage: nudge the poller \$_\",
            ScripCondition => \$_,
            ScripAction    => 'User Defined',
            Template       => 'Blank',
            CustomIsApplicableCode => 'return 1;',
            CustomPrepareCode      => 'return 1;',
            CustomCommitCode       => q{
                require LWP::UserAgent;
                my \$ua = LWP::UserAgent->new(timeout => 2);
                my \$res = \$ua->post($(perl_quote "$RT_NUDGE_URL"),
                    'Content-Type' => 'application/json',
                    Content => '{\"ticket\":' . (\$self->TicketObj->id + 0) . '}');
                RT->Logger->warning('triage nudge: ' . \$res->status_line) unless \$res->is_success;
                return 1;
            },
        }
    } ('On Create', 'On Correspond')
);"
  fi
  cat >"$INITDATA" <<EOF
# Generated by deploy/rt/rt.sh: what triage needs in a fresh RT.
@CustomFields = (
    {
        Name        => $(perl_quote "$RT_TAGS_FIELD"),
        Type        => 'FreeformMultiple',
        LookupType  => 'RT::Queue-RT::Ticket',
        Description => 'Tags (triage adds its own, agents theirs)',
        ApplyTo     => [],
    },
    {
        Name        => $(perl_quote "$RT_NOTE_FIELD"),
        Type        => 'FreeformSingle',
        LookupType  => 'RT::Queue-RT::Ticket',
        Description => 'triage: whose note is being written, and whether it is there',
        ApplyTo     => [],
    },
);
@Users = (
    {
        Name         => $(perl_quote "$RT_TRIAGE_USER"),
        RealName     => 'triage',
        EmailAddress => 'triage@triage.test',
        Privileged   => 1,
        Comments     => 'Posts triage notes as comments and adds tags',
    },
);
@ACL = (
    map { { UserId => $(perl_quote "$RT_TRIAGE_USER"), Right => \$_ } }
        qw(SeeQueue ShowTicket ShowTicketComments CommentOnTicket SeeCustomField ModifyCustomField)
);
$scrip
1;
EOF
}

# Runs Perl with RT loaded against this instance; the script comes on stdin, never argv.
rt_perl() {
  RT_SITE_CONFIG="$SITE_CONFIG" RT_SITE_CONFIG_DIR="$SITE_CONFIG_DIR" \
    perl -I"$RT_LIB" -e 'use RT; RT::LoadConfig(); RT::Init(); local $/; my $code = <STDIN>; eval $code; die $@ if $@;'
}

# Auth tokens for triage's user and for root (for tests and setup), each into a 0600 file.
make_tokens() {
  (
    umask 077
    rt_perl <<EOF
use RT::AuthToken;
for my \$pair ([$(perl_quote "$RT_TRIAGE_USER"), $(perl_quote "$TOKEN_FILE")], ['root', $(perl_quote "$ADMIN_TOKEN_FILE")]) {
    my (\$name, \$file) = @\$pair;
    my \$user = RT::User->new(RT->SystemUser);
    \$user->Load(\$name);
    die "no user \$name\n" unless \$user->id;
    my \$token = RT::AuthToken->new(RT->SystemUser);
    my (\$id, \$msg, \$string) = \$token->Create(Owner => \$user->id, Description => 'triage rt.sh');
    die "token for \$name: \$msg\n" unless \$id && \$string;
    open(my \$fh, '>', \$file) or die "\$file: \$!\n";
    print \$fh \$string, "\n";
    close(\$fh) or die "\$file: \$!\n";
}
EOF
  )
}

# The custom fields apply to every queue's tickets (global).
apply_cf_globally() {
  rt_perl <<EOF
for my \$name ($(perl_quote "$RT_TAGS_FIELD"), $(perl_quote "$RT_NOTE_FIELD")) {
    my \$cf = RT::CustomField->new(RT->SystemUser);
    \$cf->LoadByName(Name => \$name, LookupType => 'RT::Queue-RT::Ticket');
    die "no custom field \$name\n" unless \$cf->id;
    unless (\$cf->IsGlobal) {
        my (\$ok, \$msg) = \$cf->AddToObject(RT::Queue->new(RT->SystemUser));
        die "apply \$name globally: \$msg\n" unless \$ok;
    }
}
EOF
}

create_instance() {
  local t0 out
  t0=$(now_ms)
  log "creating a fresh SQLite instance in $STATE_DIR (bcrypt cost $RT_BCRYPT_COST)"
  rm -f "$DB_FILE" "$TOKEN_FILE" "$ADMIN_TOKEN_FILE"
  write_initialdata
  if ! out=$(RT_SITE_CONFIG="$SITE_CONFIG" RT_SITE_CONFIG_DIR="$SITE_CONFIG_DIR" \
    "$RT_SETUP" --action init </dev/null 2>&1); then
    printf '%s\n' "$out" >&2
    die "rt-setup-database-5 --action init failed"
  fi
  if ! out=$(RT_SITE_CONFIG="$SITE_CONFIG" RT_SITE_CONFIG_DIR="$SITE_CONFIG_DIR" \
    "$RT_SETUP" --action insert --datafile "$INITDATA" </dev/null 2>&1); then
    printf '%s\n' "$out" >&2
    die "loading $INITDATA failed"
  fi
  apply_cf_globally || die "could not apply the custom field $RT_TAGS_FIELD globally"
  make_tokens || die "could not create the auth tokens"
  record_time create "$(($(now_ms) - t0))"
}

read_pid() {
  local pid
  [[ -f $PID_FILE ]] || return 1
  pid=$(tr -dc '0-9' <"$PID_FILE")
  [[ -n $pid ]] || return 1
  printf '%s\n' "$pid"
}

is_our_server() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 1
  [[ -r /proc/$pid/environ ]] || return 1
  tr '\0' '\n' <"/proc/$pid/environ" | grep -qxF "RT_SITE_CONFIG=$SITE_CONFIG"
}

running_pid() {
  local pid
  pid=$(read_pid) || return 1
  is_our_server "$pid" || return 1
  printf '%s\n' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# A real REST 2.0 request with triage's token (the token goes in a header file, not argv).
rest_answers() {
  local hdr
  hdr=$(mktemp)
  printf 'Authorization: token %s\n' "$(tr -d '\n' <"$TOKEN_FILE")" >"$hdr"
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H "@$hdr" "$BASE_URL/REST/2.0/queues/all" || true)
  rm -f "$hdr"
  [[ $code == 200 ]]
}

wait_until_ready() {
  local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || {
      tail -n 40 "$LOG_FILE" >&2
      die "the server exited during start (log above, $LOG_FILE)"
    }
    if rest_answers; then return 0; fi
    sleep 0.2
  done
  tail -n 40 "$LOG_FILE" >&2
  kill_server "$pid"
  die "REST 2.0 did not answer within $START_TIMEOUT s"
}

kill_server() {
  local pid=$1 deadline=$((SECONDS + STOP_TIMEOUT))
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "still running after $STOP_TIMEOUT s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Starlet's workers leave with their parent; wait for the port to close.
  deadline=$((SECONDS + STOP_TIMEOUT))
  while port_open "$RT_PORT" && ((SECONDS < deadline)); do sleep 0.1; done
}

print_env() {
  echo "RT_URL=$BASE_URL"
  echo "RT_TOKEN_FILE=$TOKEN_FILE"
  echo "RT_ADMIN_TOKEN_FILE=$ADMIN_TOKEN_FILE"
}

cmd_start() {
  if ! [[ $RT_PORT =~ ^[0-9]+$ ]] || ((RT_PORT < 1 || RT_PORT > 65535)); then
    die "RT_PORT must be a TCP port number, got '$RT_PORT'"
  fi
  command -v curl >/dev/null || die "curl is needed"
  cmd_install
  mkdir -p "$STATE_DIR"
  lock
  local pid
  if pid=$(running_pid); then
    log "RT already running from $STATE_DIR (pid $pid)"
    wait_until_ready "$pid"
    print_env
    return 0
  fi
  rm -f "$PID_FILE"
  port_open "$RT_PORT" && die "$HOST:$RT_PORT is in use by another process; set RT_PORT"
  write_site_config
  if [[ ! -s $DB_FILE || ! -s $TOKEN_FILE || ! -s $ADMIN_TOKEN_FILE ]]; then
    create_instance
  fi
  [[ -f $LOG_FILE ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
  : >"$LOG_FILE"
  local t0
  t0=$(now_ms)
  log "starting RT on $BASE_URL ($RT_WORKERS workers), log $LOG_FILE"
  # setsid: a session of its own, so that signals to the caller's process group (a test
  # harness stopping, a terminal's ^C) do not reach the server.
  RT_SITE_CONFIG="$SITE_CONFIG" RT_SITE_CONFIG_DIR="$SITE_CONFIG_DIR" \
    setsid nohup "$RT_SERVER" --server Starlet --host "$HOST" --port "$RT_PORT" \
    --max-workers "$RT_WORKERS" </dev/null >>"$LOG_FILE" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  wait_until_ready "$pid"
  local ms=$(($(now_ms) - t0))
  record_time start "$ms"
  log "RT up (pid $pid) after $((ms / 1000)).$((ms % 1000 / 100)) s"
  print_env
}

cmd_stop() {
  mkdir -p "$STATE_DIR"
  lock
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    log "RT not running (state dir $STATE_DIR)"
    return 0
  fi
  log "stopping RT (pid $pid)"
  kill_server "$pid"
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  if pid=$(running_pid); then
    if port_open "$RT_PORT"; then
      echo "running: pid $pid, $BASE_URL, state dir $STATE_DIR"
    else
      echo "running but not (yet) listening: pid $pid, $BASE_URL, state dir $STATE_DIR"
    fi
    return 0
  fi
  echo "not running (state dir $STATE_DIR)"
  return 3
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
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  logs)
    [[ -f $LOG_FILE ]] || die "no server log at $LOG_FILE"
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
