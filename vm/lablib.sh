# shellcheck shell=bash
# knockgate namespace lab — a library to source (vm/lab.sh is its command line).
#
#   lab_up TAG [full|wan]   build the lab of TAG (full: every host; wan: switch, clients, gateway)
#   lab_down TAG            remove every namespace of TAG and what runs in it; safe to repeat
#   lab_status TAG          namespaces, addresses, routes and running processes
#   lab_ns TAG HOST         the namespace name of HOST (client, client2, gw, ssh, vm, r2, log, sw)
#   in_ns NAME CMD...       run CMD in namespace NAME (a full name, or a HOST of $LAB_TAG)
#
# Topology (every name below is prefixed with "TAG-"; interface names live inside the
# namespaces, so parallel labs with different tags never collide):
#
#   client  eth0 203.0.113.10/24 2001:db8:1::10/64 ─┐
#   client2 eth0 203.0.113.11/24 2001:db8:1::11/64 ─┤ sw: bridge br-wan
#   gw      kg-wan 203.0.113.1/24 2001:db8:1::1/64 ─┘
#   gw      kg-lan 192.168.50.1/24 fd00:50::1/64   ─┐
#   ssh     eth0 192.168.50.10/24 fd00:50::10/64   ─┤ sw: bridge br-lan
#   vm      eth0 192.168.50.20/24 fd00:50::20/64   ─┘
#   gw      kg-r2 192.168.70.1/24 ── r2 r2-up 192.168.70.2/24   (point-to-point veth)
#   r2      r2-log 192.168.60.1/24 ── log eth0 192.168.60.5/24  (point-to-point veth)
#
# Veth pairs are created directly inside their namespaces (ip -n NS link add … peer …
# netns NS2), so nothing of the lab ever exists in the root namespace, not even briefly.
# The lab installs no firewall rules and no ip rules; only addresses and routes inside
# its own namespaces.

LAB_TAG="${LAB_TAG:-kg}"
LAB_HOSTS_FULL="sw client client2 gw ssh vm r2 log"
LAB_HOSTS_WAN="sw client client2 gw"

_lab_err() { echo "lab: $*" >&2; }

# Runs one command; on failure says which one, so a half-built lab is easy to diagnose.
_lab_run() {
  local out
  if ! out=$("$@" 2>&1); then
    _lab_err "failed: $* ${out:+— $out}"
    return 1
  fi
}

_lab_check_tag() {
  local tag="$1"
  if [[ ! "$tag" =~ ^[A-Za-z0-9][A-Za-z0-9_]{0,23}$ ]]; then
    _lab_err "bad tag '$tag': use 1-24 letters, digits or _ (no '-': it separates tag and host)"
    return 1
  fi
}

lab_ns() { echo "$1-$2"; }

_lab_ns_exists() { [[ -e "/run/netns/$1" ]]; }

# ip netns exec NS …: sysfs and /etc/netns bind-mounts are set up for us by iproute2.
in_ns() {
  if (($# < 2)); then
    _lab_err "usage: in_ns NAME CMD..."
    return 2
  fi
  local name="$1"
  shift
  local ns="$name"
  if ! _lab_ns_exists "$ns"; then
    ns="$(lab_ns "$LAB_TAG" "$name")"
  fi
  if ! _lab_ns_exists "$ns"; then
    _lab_err "no namespace '$name' (nor '$ns')"
    return 1
  fi
  ip netns exec "$ns" "$@"
}

# _lab_link NS_A IF_A ADDRS_A NS_B IF_B: a veth pair made inside the two namespaces.
_lab_veth() {
  local ns_a="$1" if_a="$2" ns_b="$3" if_b="$4"
  _lab_run ip -n "$ns_a" link add "$if_a" type veth peer name "$if_b" netns "$ns_b" || return 1
  _lab_run ip -n "$ns_a" link set "$if_a" up || return 1
  _lab_run ip -n "$ns_b" link set "$if_b" up
}

# _lab_addr NS IF ADDR... : addresses, IPv6 ones without DAD so they work at once.
_lab_addr() {
  local ns="$1" ifname="$2"
  shift 2
  local a
  for a in "$@"; do
    if [[ "$a" == *:* ]]; then
      _lab_run ip -n "$ns" addr add "$a" dev "$ifname" nodad || return 1
    else
      _lab_run ip -n "$ns" addr add "$a" dev "$ifname" || return 1
    fi
  done
}

_lab_new_ns() {
  local ns="$1"
  if _lab_ns_exists "$ns"; then
    _lab_err "namespace $ns already exists: run 'lab_down' for its tag first"
    return 1
  fi
  _lab_run ip netns add "$ns" || return 1
  _lab_run ip -n "$ns" link set lo up || return 1
  # Routers forward; hosts do not. Everything starts explicit, nothing inherited.
  _lab_run ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=0 || return 1
  _lab_run ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.forwarding=0
}

_lab_router() {
  local ns="$1"
  _lab_run ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 || return 1
  _lab_run ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.forwarding=1
}

# A bridge in the switch namespace with spanning tree off and no forward delay, so ports
# forward the moment they are up.
_lab_bridge() {
  local ns="$1" br="$2"
  _lab_run ip -n "$ns" link add "$br" type bridge stp_state 0 forward_delay 0 || return 1
  _lab_run ip -n "$ns" link set "$br" up
}

_lab_port() {
  local ns="$1" br="$2" port="$3"
  _lab_run ip -n "$ns" link set "$port" master "$br"
}

_lab_build() {
  local tag="$1" mode="$2"
  local sw client client2 gw ssh vm r2 log
  sw=$(lab_ns "$tag" sw)
  client=$(lab_ns "$tag" client)
  client2=$(lab_ns "$tag" client2)
  gw=$(lab_ns "$tag" gw)
  ssh=$(lab_ns "$tag" ssh)
  vm=$(lab_ns "$tag" vm)
  r2=$(lab_ns "$tag" r2)
  log=$(lab_ns "$tag" log)

  local hosts="$LAB_HOSTS_FULL" h
  [[ "$mode" == wan ]] && hosts="$LAB_HOSTS_WAN"
  for h in $hosts; do
    _lab_new_ns "$(lab_ns "$tag" "$h")" || return 1
  done

  # WAN segment: the clients and the gateway's kg-wan on one bridge.
  _lab_bridge "$sw" br-wan || return 1
  _lab_veth "$client" eth0 "$sw" wan-client || return 1
  _lab_veth "$client2" eth0 "$sw" wan-client2 || return 1
  _lab_veth "$gw" kg-wan "$sw" wan-gw || return 1
  _lab_port "$sw" br-wan wan-client || return 1
  _lab_port "$sw" br-wan wan-client2 || return 1
  _lab_port "$sw" br-wan wan-gw || return 1
  _lab_addr "$client" eth0 203.0.113.10/24 2001:db8:1::10/64 || return 1
  _lab_addr "$client2" eth0 203.0.113.11/24 2001:db8:1::11/64 || return 1
  _lab_addr "$gw" kg-wan 203.0.113.1/24 2001:db8:1::1/64 || return 1
  for h in "$client" "$client2"; do
    _lab_run ip -n "$h" route add default via 203.0.113.1 || return 1
    _lab_run ip -n "$h" -6 route add default via 2001:db8:1::1 || return 1
  done
  _lab_router "$gw" || return 1
  [[ "$mode" == wan ]] && return 0

  # LAN segment: the gateway's kg-lan, the SSH host and the VM host on another bridge.
  _lab_bridge "$sw" br-lan || return 1
  _lab_veth "$gw" kg-lan "$sw" lan-gw || return 1
  _lab_veth "$ssh" eth0 "$sw" lan-ssh || return 1
  _lab_veth "$vm" eth0 "$sw" lan-vm || return 1
  _lab_port "$sw" br-lan lan-gw || return 1
  _lab_port "$sw" br-lan lan-ssh || return 1
  _lab_port "$sw" br-lan lan-vm || return 1
  _lab_addr "$gw" kg-lan 192.168.50.1/24 fd00:50::1/64 || return 1
  _lab_addr "$ssh" eth0 192.168.50.10/24 fd00:50::10/64 || return 1
  _lab_addr "$vm" eth0 192.168.50.20/24 fd00:50::20/64 || return 1
  for h in "$ssh" "$vm"; do
    _lab_run ip -n "$h" route add default via 192.168.50.1 || return 1
    _lab_run ip -n "$h" -6 route add default via fd00:50::1 || return 1
  done

  # The syslog server sits behind a second router on its own links.
  _lab_veth "$gw" kg-r2 "$r2" r2-up || return 1
  _lab_addr "$gw" kg-r2 192.168.70.1/24 || return 1
  _lab_addr "$r2" r2-up 192.168.70.2/24 || return 1
  _lab_veth "$r2" r2-log "$log" eth0 || return 1
  _lab_addr "$r2" r2-log 192.168.60.1/24 || return 1
  _lab_addr "$log" eth0 192.168.60.5/24 || return 1
  _lab_router "$r2" || return 1
  _lab_run ip -n "$r2" route add default via 192.168.70.1 || return 1
  _lab_run ip -n "$gw" route add 192.168.60.0/24 via 192.168.70.2 || return 1
  _lab_run ip -n "$log" route add default via 192.168.60.1
}

_lab_need_root() {
  if [[ $(id -u) -ne 0 ]]; then
    _lab_err "must run as root (network namespaces)"
    return 1
  fi
  if ! command -v ip >/dev/null; then
    _lab_err "iproute2 'ip' not found"
    return 1
  fi
}

# lab_up TAG [full|wan]: on any failure the partial lab is removed before returning 1.
lab_up() {
  local tag="${1:-$LAB_TAG}" mode="${2:-full}"
  _lab_need_root || return 1
  _lab_check_tag "$tag" || return 1
  if [[ "$mode" != full && "$mode" != wan ]]; then
    _lab_err "mode must be 'full' or 'wan', not '$mode'"
    return 2
  fi
  LAB_TAG="$tag"
  if ! _lab_build "$tag" "$mode"; then
    _lab_err "lab $tag failed to come up; removing what was built"
    lab_down "$tag"
    return 1
  fi
}

# Every process inside NS: ask with SIGTERM, insist with SIGKILL after ~2 s.
_lab_kill_ns_pids() {
  local ns="$1" pids
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [[ -z "$pids" ]] && return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -z "$pids" ]] && return 0
    sleep 0.2
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

lab_down() {
  local tag="${1:-$LAB_TAG}" h ns rc=0
  _lab_need_root || return 1
  _lab_check_tag "$tag" || return 1
  for h in $LAB_HOSTS_FULL; do
    ns=$(lab_ns "$tag" "$h")
    _lab_ns_exists "$ns" || continue
    _lab_kill_ns_pids "$ns"
    # Deleting a namespace deletes its interfaces and so both ends of every veth.
    if ! ip netns del "$ns" 2>/dev/null; then
      _lab_err "could not delete namespace $ns"
      rc=1
    fi
  done
  return $rc
}

lab_status() {
  local tag="${1:-$LAB_TAG}" h ns pids found=0
  _lab_check_tag "$tag" || return 1
  for h in $LAB_HOSTS_FULL; do
    ns=$(lab_ns "$tag" "$h")
    _lab_ns_exists "$ns" || continue
    found=1
    echo "== $ns"
    # grep finding nothing is not an error here (set -o pipefail in callers).
    { ip -n "$ns" -br addr show | grep -v '^lo ' || true; } | sed 's/^/  addr  /'
    ip -n "$ns" route show | sed 's/^/  route /'
    { ip -n "$ns" -6 route show | grep -v '^fe80' || true; } | sed 's/^/  route /'
    pids=$(ip netns pids "$ns" 2>/dev/null | paste -sd, - || true)
    if [[ -n "$pids" ]]; then
      ps -o pid=,user=,args= -p "$pids" | sed 's/^/  proc  /'
    fi
  done
  if ((found == 0)); then
    echo "lab $tag: down (no namespaces)"
  fi
}
