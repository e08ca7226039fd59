# shellcheck shell=bash
# ================================================================== S3 (versitygw)
# An S3-compatible server for the archive's tests and for ARCHIVE_STORE=s3 locally: the Versity S3 Gateway
# (Apache-2.0), a real S3 protocol implementation (signatures, multipart uploads, listings) over a plain directory
# (its posix backend: a bucket is a folder, an object a file). It has no release on the package registries reachable
# here, so it is built from its Go module (`go install`, about 3 minutes on 2 cores, once) and cached under
# $STACK_CACHE_DIR/bin. Buckets are created by clients (the tests create their own). Fixed development credentials:
# access key $S3_ACCESS_KEY, secret $S3_SECRET_KEY, region us-east-1, path-style http://127.0.0.1:$S3_PORT.

VERSITYGW_VERSION=v1.8.0 # pinned; needs Go >= 1.25 to build (go.mod), or a Go >= 1.21 that may fetch that toolchain
S3_LOG="$LOGS/s3.log"
S3_HOME="$STACK_DIR/s3"
S3_DATA="$S3_HOME/data"
S3_BIN="$STACK_CACHE_DIR/bin/versitygw-$VERSITYGW_VERSION"
S3_ACCESS_KEY=crm-events-archive
S3_SECRET_KEY=crm-events-archive-secret

install_s3() {
  [[ -x $S3_BIN ]] && return 0
  go_binary >/dev/null || die "s3: building versitygw $VERSITYGW_VERSION needs Go >= 1.25 (none on PATH nor in /usr/local/go); install Go, or bring up the others alone: stack.sh up postgres kafka temporal"
  go_build s3 "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" "$S3_BIN" || die "s3: go install versitygw failed"
  "$S3_BIN" --version >/dev/null 2>&1 || die "s3: $S3_BIN does not run on this machine"
  say "s3: versitygw $VERSITYGW_VERSION cached as $S3_BIN"
}

s3_alive() { pid_file_pid s3 "$S3_DATA"; }
# Any HTTP answer (an anonymous request gets 403 AccessDenied) means the gateway serves.
s3_ready() { http_status_line $S3_PORT / >/dev/null; }

start_s3() {
  if s3_alive; then
    if s3_ready; then say "s3: already up (127.0.0.1:$S3_PORT)"; return 1; fi
    say "s3: started earlier and not ready yet; waiting"; return 0
  fi
  takeover_sibling s3
  if s3_ready; then
    say "s3: 127.0.0.1:$S3_PORT already served by a server not started from $STACK_DIR; using it"
    return 1
  fi
  port_open $S3_PORT && die "s3: port $S3_PORT is taken by something this script did not start: $(port_owner $S3_PORT)"
  mkdir -p "$S3_DATA"
  say "s3: starting versitygw on 127.0.0.1:$S3_PORT (data $S3_DATA)"
  launch s3 "$S3_LOG" "$S3_BIN" --port "127.0.0.1:$S3_PORT" --access "$S3_ACCESS_KEY" --secret "$S3_SECRET_KEY" \
    --region us-east-1 --quiet posix "$S3_DATA"
  register s3 "$S3_DATA"
  return 0
}

await_s3() {
  wait_ready s3 "$S3_LOG" s3_alive s3_ready
  say "s3: up on http://127.0.0.1:$S3_PORT (path-style; access key $S3_ACCESS_KEY, secret $S3_SECRET_KEY)"
}

down_s3() { stop_owned s3 "$S3_DATA" ""; }
kill_s3() { kill_owned s3 "$S3_DATA"; }

status_s3() { s3_ready && echo up || echo down; }
