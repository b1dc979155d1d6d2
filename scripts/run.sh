#!/usr/bin/env bash
# Starts the knockgate appliance in the network-namespace lab: installs what is missing,
# builds (release), brings the lab up (vm/lab.sh), starts knockgate-policyd and
# knockgate-captured in the gateway namespace with the default config (etc/knockgate.conf,
# state moved under $KG_LAB_DIR) plus one knockd-style command door, and knocks once from
# the outside client to show it working. The daemons keep running; `vm/lab.sh down` stops
# everything and removes the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
labdir=${KG_LAB_DIR:-/tmp/knockgate-lab}

if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: run as root (it creates network namespaces)" >&2
  exit 1
fi
scripts/deps.sh run
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target knockgate-captured knockgate-policyd \
  knockgate-knock knockgatectl
bin=$root/build/release/daemons

# captured drops to this user after opening its capture socket.
if ! getent passwd knockgate >/dev/null; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin knockgate
fi

vm/lab.sh down >/dev/null 2>&1 || true
vm/lab.sh up full
mkdir -p "$labdir"
chmod 755 "$labdir"
conf=$labdir/knockgate.conf
sed -e "s|^\([[:space:]]*Database[[:space:]]*=\).*|\1 $labdir/knockgate.db|" \
    -e "s|^\([[:space:]]*RuntimeDir[[:space:]]*=\).*|\1 $labdir|" \
    -e "s|^\[options\]|[options]\n\tLogFile      = $labdir/knockgate.log|" \
    etc/knockgate.conf > "$conf"
cat >> "$conf" <<DOOR

# Added by scripts/run.sh: a knockd.conf door, unchanged knockd syntax, whose commands show
# in $labdir/commands.log (grant doors above install profiles from issue #4 on).
[knockdStyle]
	sequence      = 7001,8001,9001
	seq_timeout   = 5
	tcpflags      = syn
	start_command = echo "\$(date '+%F %T') open  %IP%" >> $labdir/commands.log
	stop_command  = echo "\$(date '+%F %T') close %IP%" >> $labdir/commands.log
	cmd_timeout   = 30
DOOR
"$bin/captured/knockgate-captured" -n -c "$conf" >/dev/null

gw() { ip netns exec kg-gw "$@"; }
gw "$bin/policyd/knockgate-policyd" -c "$conf" >"$labdir/policyd.out" 2>&1 &
for _ in $(seq 50); do [ -S "$labdir/policyd.sock" ] && break; sleep 0.1; done
gw "$bin/captured/knockgate-captured" -c "$conf" >"$labdir/captured.out" 2>&1 &
for _ in $(seq 50); do grep -q "connected to policyd" "$labdir/captured.out" 2>/dev/null && break; sleep 0.1; done

echo
echo "knockgate is running in the lab (gateway namespace kg-gw, WAN 203.0.113.1)."
echo "A first knock from the outside client (namespace kg-client):"
echo "  vm/lab.sh exec client $bin/knock/knockgate-knock -v 203.0.113.1 7001 8001 9001"
ip netns exec kg-client "$bin/knock/knockgate-knock" -v 203.0.113.1 7001 8001 9001
for _ in $(seq 50); do [ -s "$labdir/commands.log" ] && break; sleep 0.1; done
echo
echo "== $labdir/knockgate.log"
cat "$labdir/knockgate.log"
echo "== $labdir/commands.log"
cat "$labdir/commands.log" 2>/dev/null || echo "(no command ran: see $labdir/*.out)"
cat <<EOT

Try the real knockd client too:  vm/lab.sh exec client knock -v 203.0.113.1 7001 8001 9001
Config: $conf   Logs: $labdir/{knockgate.log,policyd.out,captured.out}
Stop and remove everything:      vm/lab.sh down
EOT
