#!/usr/bin/env bash
# knockgate namespace lab. Run as root. See docs/lab.md.
#
#   vm/lab.sh [-t TAG] up [full|wan]     build the lab (default: full)
#   vm/lab.sh [-t TAG] down              remove it (safe to repeat)
#   vm/lab.sh [-t TAG] status            namespaces, addresses, routes, running daemons
#   vm/lab.sh [-t TAG] exec HOST CMD...  run CMD in HOST (client, client2, gw, ssh, vm, r2, log, sw)
#   vm/lab.sh [-t TAG] shell HOST        interactive shell in HOST
#   vm/lab.sh [-t TAG] start [BIN_DIR]   start the appliance in the lab: OpenSSH on the SSH
#                                        host, syslog on the log server, the four daemons
#                                        (BIN_DIR: build/release)
#   vm/lab.sh [-t TAG] stop              stop what start started
#   vm/lab.sh [-t TAG] tour [BIN_DIR]    knock, SSH in, the grant in the console, revoke, expiry
#
# TAG (default: $LAB_TAG or "kg") prefixes every namespace, so labs can run side by side;
# the appliance's files are in $KG_LAB_DIR (default /tmp/knockgate-lab) for the tag kg and
# in $KG_LAB_DIR-TAG for any other tag.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=vm/lablib.sh
source "$here/lablib.sh"
# shellcheck source=vm/appliance.sh
source "$here/appliance.sh"

usage() {
 sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

tag="$LAB_TAG"
while (($#)); do
  case "$1" in
    -t | --tag)
      (($# >= 2)) || usage
      tag="$2"
      shift 2
      ;;
    -h | --help) usage 0 ;;
    -*)
      echo "lab: unknown option $1" >&2
      usage
      ;;
    *) break ;;
  esac
done
(($#)) || usage
cmd="$1"
shift
LAB_TAG="$tag"
_lab_check_tag "$tag" || exit 2
KG_LAB_DIR=$(appliance_dir "$tag")

host_ns() {
  local host="$1" ns
  ns=$(lab_ns "$tag" "$host")
  if [[ ! -e "/run/netns/$ns" ]]; then
    echo "lab: no host '$host' in lab '$tag' (is it up? hosts: $LAB_HOSTS_FULL)" >&2
    exit 1
  fi
  echo "$ns"
}

case "$cmd" in
  up)
    (($# <= 1)) || usage
    lab_up "$tag" "${1:-full}"
    echo "lab $tag is up"
    lab_status "$tag"
    ;;
  down)
    (($# == 0)) || usage
    appliance_stop "$tag"
    lab_down "$tag"
    echo "lab $tag is down"
    ;;
  status)
    (($# == 0)) || usage
    lab_status "$tag"
    ;;
  exec)
    (($# >= 2)) || usage
    ns=$(host_ns "$1")
    shift
    exec ip netns exec "$ns" "$@"
    ;;
  shell)
    (($# == 1)) || usage
    ns=$(host_ns "$1")
    echo "lab: shell in $ns (exit to leave)" >&2
    exec ip netns exec "$ns" env PS1="[$ns] \\w# " bash --norc -i
    ;;
  start)
    (($# <= 1)) || usage
    host_ns gw >/dev/null
    appliance_start "$tag" "$(cd "${1:-$here/../build/release}" && pwd)"
    ;;
  stop)
    (($# == 0)) || usage
    appliance_stop "$tag"
    ;;
  tour)
    (($# <= 1)) || usage
    host_ns gw >/dev/null
    appliance_tour "$tag" "$(cd "${1:-$here/../build/release}" && pwd)"
    ;;
  *)
    echo "lab: unknown command '$cmd'" >&2
    usage
    ;;
esac
