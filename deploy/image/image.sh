#!/usr/bin/env bash
# Builds deploy/Dockerfile without a daemon and without an image registry: podman in a private
# store, with local stand-ins for the two base images (Debian from the Debian archive with
# debootstrap; for the build stage, that base plus this machine's Rust toolchain). Run
# `image.sh --help` for the commands and the environment variables.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
PROG=$(basename "$0")

STATE_DIR=${TRIAGE_IMAGE_DIR:-/tmp/triage-image}
RELEASE=${TRIAGE_IMAGE_DEBIAN_RELEASE:-bookworm}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n 1)
IMAGE=${TRIAGE_IMAGE:-triage:$VERSION}
RUN_BASE=localhost/triage-run-base:$RELEASE
ROOTFS="$STATE_DIR/rootfs"
TIMES_FILE="$STATE_DIR/times"
PACKAGES=(podman buildah debootstrap runc)
# What the build stage needs beside Rust: librdkafka is compiled with cmake, C and C++; openssl-sys
# and libz-sys link the system's OpenSSL and zlib.
BUILD_PACKAGES=(ca-certificates cmake gcc g++ make perl pkg-config libssl-dev zlib1g-dev libc6-dev)
# The limits and network every `podman run` here needs (see usage).
RUN_FLAGS=(--runtime runc --ulimit nofile=20000:20000 --ulimit nproc=1024:1024 --network=host)

usage() {
  cat <<EOF
Usage: $PROG COMMAND [ARGS...]

Builds deploy/Dockerfile with podman, without a daemon (--isolation=chroot) and without a
registry (--pull=never), in a private image store under the state dir; the system's own
container storage is never touched.

Commands:
  build    Install podman, buildah, debootstrap and runc when missing (apt-get, as root), make
           the base images when missing (see 'bases'), then build deploy/Dockerfile as
           \$TRIAGE_IMAGE with --build-arg BUILD_IMAGE=... RUN_IMAGE=... RUST_VERSION=...
           Prints on stdout, one VARIABLE=value a line:
             TRIAGE_IMAGE=$IMAGE
             TRIAGE_IMAGE_SIZE_MB=...        (podman's size of the image)
             TRIAGE_IMAGE_BUILD_S=...        (podman build of deploy/Dockerfile)
             TRIAGE_IMAGE_BASES_S=...        (0 when the base images were reused)
             TRIAGE_IMAGE_DEBOOTSTRAP_S=...  (of the last debootstrap in this state dir)
           and the build's output on stderr.
  bases    Make the two base images when missing, reusing them when present:
             $RUN_BASE
               debootstrap --variant=minbase $RELEASE from the Debian mirror named in this
               machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/), trimmed
               like Debian's -slim images (no documentation, manual pages or translations);
             localhost/triage-build-base:RUSTC_VERSION-$RELEASE
               that base plus ${BUILD_PACKAGES[*]}
               (apt-get inside) and the Rust toolchain that \`rustc\` runs in the repository
               (its sysroot, without the documentation), as /usr/local/rust; CARGO_HOME is
               /usr/local/cargo, as in the official rust images. The CA certificates this
               machine adds in /usr/local/share/ca-certificates go into the build base too
               (never into the image), so that the build stage reaches the crate registry as the
               machine does. Made again when its recipe, those certificates or the
               toolchain change.
  podman ARGS...
           podman with the private store and, for 'run', the flags every run needs here:
             podman --root \$STATE_DIR/store --runroot \$STATE_DIR/runroot --storage-driver overlay
             run ${RUN_FLAGS[*]} ...
           (crun fails here with "cgroups in hybrid mode not supported" and cannot set the
           limits; the default bridge network would create an interface and iptables chains).
  mirror   Print the Debian mirror and security mirror read from the apt sources.
  clean    Delete the state dir: the private store (every image and container in it), the
           cargo cache mounts and what is left of a rootfs.
  -h, --help

Environment (defaults in brackets):
  TRIAGE_IMAGE_DIR      state dir [/tmp/triage-image]
  TRIAGE_IMAGE          tag of the image built [triage:VERSION from Cargo.toml; podman names
                        it localhost/triage:VERSION, and deploy/k8s refers to triage:VERSION]
  TRIAGE_DEBIAN_MIRROR  Debian mirror for debootstrap [read from the apt sources]
  TRIAGE_IMAGE_DEBIAN_RELEASE  [bookworm]
  TRIAGE_IMAGE_JOBS     parallel jobs of the cargo build in the image [default: one per CPU]

Elsewhere, with a registry, the same Dockerfile builds from the official images:
  docker build -f deploy/Dockerfile -t triage:$VERSION .
EOF
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "$*"; exit 1; }

podman_() {
  # TMPDIR: buildah keeps the Dockerfile's cache mounts (cargo's registry and target/) and its
  # scratch space under it (else /var/tmp): in the state dir, they go with `clean`.
  mkdir -p "$STATE_DIR/tmp"
  TMPDIR="$STATE_DIR/tmp" podman --root "$STATE_DIR/store" --runroot "$STATE_DIR/runroot" --storage-driver overlay \
    --cgroup-manager cgroupfs --events-backend file "$@"
}

ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    command -v "$p" >/dev/null || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    die "missing ${missing[*]}: apt-get install -y --no-install-recommends ${PACKAGES[*]}"
  fi
  log "installing ${missing[*]} (apt-get)"
  local apt_log
  apt_log=$(mktemp)
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } \
    >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    rm -f "$apt_log"
    exit 1
  fi
  rm -f "$apt_log"
}

# The URI of the first enabled Debian source (one-line .list or deb822 .sources) for the suite
# given, among Types: deb. Nothing when none names it.
apt_uri() {
  local suite=$1 f
  local files=()
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && files+=("$f")
  done
  [[ ${#files[@]} -eq 0 ]] && return 0
  awk -v suite="$suite" '
    function flush() {
      if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && enabled != "no" && !found) {
        split(uris, u, " "); print u[1]; found = 1
      }
      types = ""; suites = ""; uris = ""; enabled = ""
    }
    FNR == 1 { flush() }
    /^[ \t]*#/ { next }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[ \t]*$/) { flush(); next }
      key = tolower($1); sub(/:$/, "", key)
      val = $0; sub(/^[^:]*:[ \t]*/, "", val)
      if (key == "types") types = val
      else if (key == "suites") suites = val
      else if (key == "uris") uris = val
      else if (key == "enabled") enabled = tolower(val)
      next
    }
    $1 == "deb" && !found {
      i = 2
      if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
      if ($(i + 1) == suite) { print $i; found = 1 }
    }
    END { flush() }
  ' "${files[@]}"
}

mirror() {
  if [[ -n ${TRIAGE_DEBIAN_MIRROR:-} ]]; then
    echo "$TRIAGE_DEBIAN_MIRROR"
    return
  fi
  apt_uri "$RELEASE"
}

record_time() {
  local key=$1 value=$2
  mkdir -p "$STATE_DIR"
  touch "$TIMES_FILE"
  sed -i "/^$key=/d" "$TIMES_FILE"
  echo "$key=$value" >>"$TIMES_FILE"
}

recorded_time() {
  sed -n "s/^$1=//p" "$TIMES_FILE" 2>/dev/null | tail -n 1
}

rustc_version() { (cd "$REPO" && rustc --version | awk '{print $2}'); }

build_base_tag() { echo "localhost/triage-build-base:$(rustc_version)-$RELEASE"; }

make_run_base() {
  if podman_ image exists "$RUN_BASE"; then
    log "reusing $RUN_BASE"
    return
  fi
  local mirror_uri security_uri
  mirror_uri=$(mirror)
  [[ -n $mirror_uri ]] ||
    die "no Debian mirror for $RELEASE in /etc/apt/sources.list or /etc/apt/sources.list.d/; set TRIAGE_DEBIAN_MIRROR"
  security_uri=$(apt_uri "$RELEASE-security")
  rm -rf "$ROOTFS"
  mkdir -p "$STATE_DIR"
  log "debootstrap --variant=minbase $RELEASE from $mirror_uri (about a minute)"
  local start=$SECONDS deb_log
  deb_log="$STATE_DIR/debootstrap.log"
  if ! debootstrap --variant=minbase "$RELEASE" "$ROOTFS" "$mirror_uri" >"$deb_log" 2>&1; then
    tail -n 30 "$deb_log" >&2
    die "debootstrap failed (whole log: $deb_log)"
  fi
  record_time debootstrap_s $((SECONDS - start))
  log "debootstrap done in $((SECONDS - start)) s"
  # The same sources as the machine's: the release, its updates and, when the machine has one,
  # its security suite.
  {
    echo "deb $mirror_uri $RELEASE main"
    echo "deb $mirror_uri $RELEASE-updates main"
    [[ -z $security_uri ]] || echo "deb $security_uri $RELEASE-security main"
  } >"$ROOTFS/etc/apt/sources.list"
  # Trimmed like the -slim images: dpkg leaves documentation, manual pages and translations
  # out of every package installed later, and those already installed are removed.
  cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$ROOTFS/etc/apt/apt.conf.d/docker-no-languages"
  find "$ROOTFS/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
  find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/* \
    "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log \
    "$ROOTFS"/var/cache/apt/*.bin
  log "importing the rootfs as $RUN_BASE"
  tar -C "$ROOTFS" --numeric-owner -c . |
    podman_ import --change 'CMD ["/bin/bash"]' - "$RUN_BASE" >/dev/null
  rm -rf "$ROOTFS"
}

make_build_base() {
  local tag sysroot ctx recipe
  tag=$(build_base_tag)
  sysroot=$(cd "$REPO" && rustc --print sysroot)
  [[ -x $sysroot/bin/cargo && -x $sysroot/bin/rustc ]] || die "no cargo and rustc in $sysroot"
  ctx="$STATE_DIR/build-base-context"
  rm -rf "$ctx"
  mkdir -p "$ctx/rust" "$ctx/ca-certificates"
  # The CA certificates this machine adds to Debian's (update-ca-certificates reads them from
  # /usr/local/share/ca-certificates): where the machine reaches the crate registry through a proxy of
  # its own, so must the build stage. Only the build base gets them, never the image.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ctx/ca-certificates/"
  fi
  cat >"$ctx/Containerfile" <<EOF
FROM $RUN_BASE
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ${BUILD_PACKAGES[*]} \\
 && rm -rf /var/lib/apt/lists/*
COPY ca-certificates /usr/local/share/ca-certificates
RUN update-ca-certificates
COPY rust /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && rustc --version && cargo --version
EOF
  # Reused only when made from the same recipe, certificates and toolchain.
  recipe=$({
    cat "$ctx/Containerfile" "$ctx"/ca-certificates/* 2>/dev/null
    (cd "$REPO" && rustc -vV)
  } | sha256sum | cut -c1-16)
  echo "LABEL triage.base.recipe=$recipe" >>"$ctx/Containerfile"
  if podman_ image exists "$tag" &&
    [[ $(podman_ image inspect --format '{{index .Labels "triage.base.recipe"}}' "$tag") == "$recipe" ]]; then
    log "reusing $tag"
    rm -rf "$ctx"
    return
  fi
  # Hard links where the sysroot and the state dir share a file system (fast), else a copy;
  # without the documentation (share/).
  local part
  for part in bin lib libexec etc; do
    [[ -e $sysroot/$part ]] || continue
    cp -al "$sysroot/$part" "$ctx/rust/" 2>/dev/null || cp -a "$sysroot/$part" "$ctx/rust/"
  done
  log "building $tag ($(cd "$REPO" && rustc --version) from $sysroot, and apt-get install ${BUILD_PACKAGES[*]})"
  podman_ build --isolation=chroot --pull=never --layers=false -t "$tag" -f "$ctx/Containerfile" "$ctx" >&2
  rm -rf "$ctx"
}

bases() {
  ensure_packages
  local start=$SECONDS
  make_run_base
  make_build_base
  record_time bases_s $((SECONDS - start))
}

build() {
  ensure_packages
  local start=$SECONDS
  make_run_base
  make_build_base
  local bases_s=$((SECONDS - start))
  local build_base
  build_base=$(build_base_tag)
  log "building deploy/Dockerfile as $IMAGE"
  start=$SECONDS
  podman_ build --isolation=chroot --pull=never \
    --build-arg "BUILD_IMAGE=$build_base" \
    --build-arg "RUN_IMAGE=$RUN_BASE" \
    --build-arg "RUST_VERSION=$(rustc_version)" \
    --build-arg "CARGO_BUILD_JOBS=${TRIAGE_IMAGE_JOBS:-default}" \
    -t "$IMAGE" -f "$REPO/deploy/Dockerfile" "$REPO" >&2
  local build_s=$((SECONDS - start))
  record_time build_s "$build_s"
  local size
  size=$(podman_ image inspect --format '{{.Size}}' "$IMAGE")
  echo "TRIAGE_IMAGE=$IMAGE"
  echo "TRIAGE_IMAGE_SIZE_MB=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')"
  echo "TRIAGE_IMAGE_BUILD_S=$build_s"
  echo "TRIAGE_IMAGE_BASES_S=$bases_s"
  echo "TRIAGE_IMAGE_DEBOOTSTRAP_S=$(recorded_time debootstrap_s)"
  log "$IMAGE: $(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }') MB, deploy/Dockerfile built in $build_s s (base images: $bases_s s)"
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case "$cmd" in
  build) build ;;
  bases) bases ;;
  podman)
    ensure_packages
    if [[ ${1:-} == run ]]; then
      shift
      podman_ run "${RUN_FLAGS[@]}" "$@"
    else
      podman_ "$@"
    fi
    ;;
  mirror)
    echo "mirror: $(mirror)"
    echo "security: $(apt_uri "$RELEASE-security")"
    ;;
  clean)
    if [[ -d $STATE_DIR/store ]] && command -v podman >/dev/null; then
      podman_ rm --all --force >/dev/null 2>&1 || true
      podman_ rmi --all --force >/dev/null 2>&1 || true
    fi
    rm -rf "$STATE_DIR"
    ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
