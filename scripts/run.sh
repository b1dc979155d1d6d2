#!/usr/bin/env bash
# Starts the knockgate appliance in the network-namespace lab: installs what is missing,
# builds (release), brings the lab up (vm/lab.sh up), starts the appliance in it
# (vm/lab.sh start: OpenSSH on the SSH host, syslog on the log server, knockgate-policyd,
# -captured, -verdictd and -webd in the gateway with the default config, etc/knockgate.conf,
# state under $KG_LAB_DIR, plus one knockd-style command door), runs the tour (knock, SSH
# in, the grant in the console, revoke, expiry) and prints the console's address and login.
# Everything keeps running; `vm/lab.sh down` stops it and removes the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export KG_LAB_DIR=${KG_LAB_DIR:-/tmp/knockgate-lab}
export KG_CONSOLE_PORT=${KG_CONSOLE_PORT:-8080}

if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: run as root (it creates network namespaces)" >&2
  exit 1
fi
scripts/deps.sh run
cmake --preset release >/dev/null
targets=(knockgate-captured knockgate-policyd knockgate-knock knockgatectl)
[ -d daemons/verdictd ] && targets+=(knockgate-verdictd)
[ -d daemons/webd ] && targets+=(knockgate-webd)
cmake --build --preset release -j "$(nproc)" --target "${targets[@]}"
bin=$root/build/release

vm/lab.sh down >/dev/null 2>&1 || true
vm/lab.sh up full
vm/lab.sh start "$bin"

tour=passed
vm/lab.sh tour "$bin" || tour=FAILED

echo
echo "== $KG_LAB_DIR/knockgate.log (knockd's format)"
tail -n 15 "$KG_LAB_DIR/knockgate.log" 2>/dev/null || true
cat <<EOT

knockgate is running in the lab (gateway namespace kg-gw, WAN 203.0.113.1). Tour: $tour.
EOT
if [ -s "$KG_LAB_DIR/console-password" ]; then
  cat <<EOT
Web console:  http://127.0.0.1:$KG_CONSOLE_PORT/   login: admin   password: $(cat "$KG_LAB_DIR/console-password")
EOT
fi
cat <<EOT
Knock:        vm/lab.sh exec client $bin/tools/knock/knockgate-knock -v 203.0.113.1 7000 8000 9000
              (or the real knockd client: vm/lab.sh exec client knock -v 203.0.113.1 7000 8000 9000)
SSH in:       vm/lab.sh exec client ssh -i $KG_LAB_DIR/id_ed25519 root@203.0.113.1
Grants:       $bin/tools/ctl/knockgatectl -c $KG_LAB_DIR/knockgate.conf grants
Tour again:   vm/lab.sh tour      Shell in a host: vm/lab.sh shell gw|client|ssh|vm|log
Logs:         $KG_LAB_DIR/*.out, $KG_LAB_DIR/knockgate.log
Stop and remove everything:  vm/lab.sh down
EOT
[ "$tour" = passed ]
