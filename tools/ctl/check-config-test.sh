#!/usr/bin/env bash
# check-config-test.sh KNOCKGATECTL DATA_DIR: exit codes and output of `check-config`.
set -euo pipefail
ctl=$1 data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A good file: exit 0, the normalised config on stdout, nothing on stderr; the output
# checks clean itself.
good=$data/good/knockd-classic.conf
"$ctl" check-config "$good" >"$tmp/out" 2>"$tmp/err" || fail "good file: exit $?"
[ ! -s "$tmp/err" ] || fail "good file wrote to stderr: $(cat "$tmp/err")"
grep -qx '\[openSSH\]' "$tmp/out" || fail "no [openSSH] in the dump"
grep -qx 'sequence = 7000:tcp,8000:tcp,9000:tcp' "$tmp/out" || fail "sequence not normalised"
"$ctl" check-config "$tmp/out" >"$tmp/out2" || fail "dump does not check clean"
cmp -s "$tmp/out" "$tmp/out2" || fail "dump of the dump differs"

# A bad file: exit 1, every error on stderr one per line, nothing on stdout.
bad=$data/bad/many-errors.conf
set +e
"$ctl" check-config "$bad" >"$tmp/out" 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "bad file: exit $rc, want 1"
[ ! -s "$tmp/out" ] || fail "bad file wrote to stdout"
sed -n 's/^# expect: /'"$(printf '%s' "$bad" | sed 's/[\/&]/\\&/g')"':/p' "$bad" >"$tmp/want"
diff -u "$tmp/want" "$tmp/err" || fail "bad file: errors differ"
[ "$(wc -l <"$tmp/err")" -ge 5 ] || fail "expected every error of the file"

# Usage errors exit 2; --help exits 0.
for args in "" "check-config" "check-config a b" "no-such-command"; do
  set +e
  # shellcheck disable=SC2086
  "$ctl" $args >/dev/null 2>&1
  rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "'knockgatectl $args': exit $rc, want 2"
done
"$ctl" --help | grep -q 'check-config FILE' || fail "--help does not list check-config"
"$ctl" check-config --help >/dev/null || fail "check-config --help"

# An unreadable file is an error of the file, not a usage error.
set +e
"$ctl" check-config "$tmp/missing.conf" 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "missing file: exit $rc, want 1"
grep -qx "$tmp/missing.conf: cannot open: No such file or directory" "$tmp/err" ||
  fail "missing file message: $(cat "$tmp/err")"
echo "check-config: all checks passed"
