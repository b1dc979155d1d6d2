# knockgate in the namespace lab: the appliance's services on top of vm/lablib.sh's hosts.
# Sourced by vm/lab.sh. Everything lives in the lab's namespaces and in $KG_LAB_DIR; the
# only thing in the root namespace is a loopback forwarder to the web console (a
# listening socket, no route, rule or firewall change).
#
#   appliance_start TAG BIN_DIR     config, lab services (sshd, syslog), the four daemons
#                                   (BIN_DIR: the build directory, e.g. build/release)
#   appliance_stop  TAG             stops what appliance_start started
#   appliance_tour  TAG BIN_DIR     knock, SSH in, the grant in the console, revoke, expiry

# Every tag has its own directory (config, database, pid files), so stopping one lab never
# touches another lab's daemons: the default tag kg uses $KG_LAB_DIR (default
# /tmp/knockgate-lab), any other tag $KG_LAB_DIR-TAG. vm/lab.sh sets KG_LAB_DIR from it.
KG_LAB_BASE=${KG_LAB_DIR:-/tmp/knockgate-lab}
KG_LAB_DIR=$KG_LAB_BASE
appliance_dir() {
  if [[ $1 == kg ]]; then echo "$KG_LAB_BASE"; else echo "$KG_LAB_BASE-$1"; fi
}
KG_CONSOLE_PORT=${KG_CONSOLE_PORT:-8080}
KG_LAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

_app_ns() { echo "$1-$2"; }
_app_in() {
  local tag="$1" host="$2"
  shift 2
  ip netns exec "$(_app_ns "$tag" "$host")" "$@"
}

# Starts CMD in HOST in the background, output to $KG_LAB_DIR/NAME.out, pid in NAME.pid.
_app_spawn() {
  local tag="$1" host="$2" name="$3"
  shift 3
  ip netns exec "$(_app_ns "$tag" "$host")" "$@" >"$KG_LAB_DIR/$name.out" 2>&1 &
  echo $! >"$KG_LAB_DIR/$name.pid"
}

_app_wait_for() {  # FILE PATTERN SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "lab: timed out waiting for '$2' in $1" >&2
  return 1
}

_app_user() {
  getent passwd "$1" >/dev/null ||
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$1"
}

_app_config() {
  local conf="$KG_LAB_DIR/knockgate.conf"
  sed -e "s|^\([[:space:]]*Database[[:space:]]*=\).*|\1 $KG_LAB_DIR/state/knockgate.db|" \
    -e "s|^\([[:space:]]*RuntimeDir[[:space:]]*=\).*|\1 $KG_LAB_DIR/run\n\tPidFile      = $KG_LAB_DIR/policyd.pid|" \
    -e "s|^\[options\]|[options]\n\tLogFile      = $KG_LAB_DIR/knockgate.log\n\tWebRoot      = $KG_LAB_SRC/web\n\tWebPasswordFile = $KG_LAB_DIR/web.passwd\n\tWebTokenFile = $KG_LAB_DIR/web.tokens\n\tWebListen    = 127.0.0.1:$KG_CONSOLE_PORT,192.168.50.1:$KG_CONSOLE_PORT|" \
    "$KG_LAB_SRC/etc/knockgate.conf" >"$conf"
  cat >>"$conf" <<DOOR

# A knockd-style door: commands, no grant (an existing knockd.conf just works).
[knockdStyle]
	sequence      = 7001,8001,9001
	seq_timeout   = 5
	tcpflags      = syn
	start_command = echo "\$(date '+%F %T') open  %IP%" >> $KG_LAB_DIR/commands.log
	stop_command  = echo "\$(date '+%F %T') close %IP%" >> $KG_LAB_DIR/commands.log
	cmd_timeout   = 30
DOOR
  echo "$conf"
}

# OpenSSH on the SSH host (key login for root), a syslog sink on the log server.
_app_services() {
  local tag="$1" d="$KG_LAB_DIR/sshd"
  mkdir -p "$d" /run/sshd
  [[ -f $d/host_ed25519 ]] || ssh-keygen -q -t ed25519 -N "" -f "$d/host_ed25519"
  [[ -f $KG_LAB_DIR/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N "" -f "$KG_LAB_DIR/id_ed25519"
  cp "$KG_LAB_DIR/id_ed25519.pub" "$d/authorized_keys"
  chmod 600 "$d/authorized_keys"
  cat >"$d/sshd_config" <<EOF
ListenAddress 0.0.0.0:22
HostKey $d/host_ed25519
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $d/sshd.pid
EOF
  _app_spawn "$tag" ssh sshd /usr/sbin/sshd -D -e -f "$d/sshd_config"
  if command -v rsyslogd >/dev/null; then
    cat >"$KG_LAB_DIR/rsyslog.conf" <<EOF
module(load="imudp")
input(type="imudp" port="514")
module(load="imtcp")
input(type="imtcp" port="514")
*.* $KG_LAB_DIR/syslog-server.log
EOF
    _app_spawn "$tag" log rsyslog rsyslogd -n -f "$KG_LAB_DIR/rsyslog.conf" \
      -i "$KG_LAB_DIR/rsyslog.pid"
  fi
}

appliance_start() {
  local tag="$1" bin="$2" conf
  mkdir -p "$KG_LAB_DIR/run"
  chmod 755 "$KG_LAB_DIR" "$KG_LAB_DIR/run"
  for u in knockgate knockgate-policy knockgate-verdict knockgate-web; do _app_user "$u"; done
  getent group knockgate-admin >/dev/null || groupadd --system knockgate-admin
  conf=$(_app_config)
  "$bin/daemons/captured/knockgate-captured" -n -c "$conf" >/dev/null
  _app_services "$tag"

  _app_spawn "$tag" gw policyd "$bin/daemons/policyd/knockgate-policyd" -c "$conf"
  _app_wait_for "$KG_LAB_DIR/policyd.out" "ready" 10 || true
  for _ in $(seq 50); do [[ -S $KG_LAB_DIR/run/policyd.sock ]] && break; sleep 0.1; done
  _app_spawn "$tag" gw captured "$bin/daemons/captured/knockgate-captured" -c "$conf"
  _app_wait_for "$KG_LAB_DIR/captured.out" "connected to policyd" 10
  if [[ -x $bin/daemons/verdictd/knockgate-verdictd ]]; then
    _app_spawn "$tag" gw verdictd "$bin/daemons/verdictd/knockgate-verdictd" -c "$conf"
    _app_wait_for "$KG_LAB_DIR/verdictd.out" "grant snapshot" 10 || true
  fi
  if [[ -x $bin/daemons/webd/knockgate-webd ]]; then
    # The console's login: admin with a password made for this lab.
    # Only root may read it (0600), whoever made the file first.
    if [[ ! -s $KG_LAB_DIR/console-password ]]; then
      (umask 077 && head -c 12 /dev/urandom | base64 | tr -d '/+=' >"$KG_LAB_DIR/console-password")
    fi
    chmod 600 "$KG_LAB_DIR/console-password"
    "$bin/tools/ctl/knockgatectl" passwd -c "$conf" --stdin admin <"$KG_LAB_DIR/console-password" \
      >/dev/null
    _app_spawn "$tag" gw webd "$bin/daemons/webd/knockgate-webd" -c "$conf"
    _app_wait_for "$KG_LAB_DIR/webd.out" "listening" 10 || true
    # The console from the host's loopback, forwarded into the gateway's namespace.
    if command -v socat >/dev/null; then
      socat TCP-LISTEN:"$KG_CONSOLE_PORT",bind=127.0.0.1,reuseaddr,fork \
        EXEC:"ip netns exec $(_app_ns "$tag" gw) socat STDIO TCP\:127.0.0.1\:$KG_CONSOLE_PORT" \
        >"$KG_LAB_DIR/forward.out" 2>&1 &
      echo $! >"$KG_LAB_DIR/forward.pid"
    fi
  fi
}

appliance_stop() {
  local name pid
  # The daemons get SIGTERM (a clean stop removes policyd's kernel state); namespaces
  # going away take everything else.
  for name in forward webd verdictd captured policyd rsyslog sshd; do
    [[ -f $KG_LAB_DIR/$name.pid ]] || continue
    pid=$(cat "$KG_LAB_DIR/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$KG_LAB_DIR/$name.pid"
  done
}

_tour_step() { printf '\n== %s\n' "$*"; }
_tour_fail() {
  echo "tour: FAILED: $*" >&2
  return 1
}

# The scripted tour; exits non-zero at the first step that does not behave.
appliance_tour() {
  local tag="$1" bin="$2" conf="$KG_LAB_DIR/knockgate.conf"
  local ctl=("$bin/tools/ctl/knockgatectl" -c "$conf")
  local ssh=(ssh -i "$KG_LAB_DIR/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o ConnectTimeout=3 -o LogLevel=ERROR root@203.0.113.1)

  _tour_step "Before knocking, the SSH host behind the gateway is closed to the client"
  if _app_in "$tag" client "${ssh[@]}" true 2>/dev/null; then
    _tour_fail "ssh worked without a knock"
    return 1
  fi
  echo "ssh root@203.0.113.1: refused/timed out, as it should"

  _tour_step "The gateway itself is closed from the WAN; its console answers the LAN"
  local addr
  for addr in 203.0.113.1 192.168.50.1; do
    if _app_in "$tag" client nc -z -w 1 "$addr" "$KG_CONSOLE_PORT" 2>/dev/null; then
      _tour_fail "the console answers the client on $addr"
      return 1
    fi
    echo "client -> $addr:$KG_CONSOLE_PORT (console): dropped"
  done
  if [[ -S $KG_LAB_DIR/run/policyd.sock && -f $KG_LAB_DIR/console-password ]]; then
    _app_in "$tag" ssh nc -z -w 2 192.168.50.1 "$KG_CONSOLE_PORT" ||
      { _tour_fail "the LAN host cannot reach the console"; return 1; }
    echo "ssh host (LAN) -> 192.168.50.1:$KG_CONSOLE_PORT (console): open"
  fi

  _tour_step "The client knocks the openSSH door (7000,8000,9000)"
  _app_in "$tag" client "$bin/tools/knock/knockgate-knock" -v 203.0.113.1 7000 8000 9000
  local i
  for i in $(seq 30); do
    "${ctl[@]}" grants --source 203.0.113.10 2>/dev/null | grep -q ssh-only && break
    sleep 0.1
  done
  "${ctl[@]}" grants || return 1

  _tour_step "SSH through the gateway's WAN address now reaches 192.168.50.10"
  _app_in "$tag" client "${ssh[@]}" 'echo "logged in to $(hostname -I)"' ||
    { _tour_fail "ssh after the knock"; return 1; }

  if [[ -S $KG_LAB_DIR/run/policyd.sock && -f $KG_LAB_DIR/console-password ]]; then
    _tour_step "The grant in the web console's API (what the dashboard shows)"
    _app_in "$tag" gw python3 - "$KG_CONSOLE_PORT" "$(cat "$KG_LAB_DIR/console-password")" <<'EOF' || return 1
import http.client, json, sys
port, password = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
c.request("POST", "/api/v1/login", json.dumps({"username": "admin", "password": password}),
          {"Content-Type": "application/json", "Origin": "http://127.0.0.1:%d" % port})
r = c.getresponse(); body = r.read()
cookie = r.getheader("Set-Cookie", "").split(";")[0]
if r.status != 200 or not cookie:
    sys.exit("login failed: %d %s" % (r.status, body[:200]))
c.request("GET", "/api/v1/grants", headers={"Cookie": cookie})
r = c.getresponse(); grants = json.loads(r.read()).get("grants", [])
for g in grants:
    print("console: grant %s %s %s until %s" % (g["id"], g["source"], g["profile"], g["expires"]))
if not any(g["source"] == "203.0.113.10" for g in grants):
    sys.exit("the console does not show the grant")
EOF
  fi

  _tour_step "A second client that did not knock stays outside"
  if _app_in "$tag" client2 "${ssh[@]}" true 2>/dev/null; then
    _tour_fail "client2 got in without knocking"
    return 1
  fi
  echo "client2: refused/timed out"

  _tour_step "Revoke the grant: new connections fail again"
  "${ctl[@]}" revoke 203.0.113.10 || return 1
  sleep 0.2
  if _app_in "$tag" client "${ssh[@]}" true 2>/dev/null; then
    _tour_fail "ssh still works after the revoke"
    return 1
  fi
  echo "ssh after revoke: refused/timed out"

  _tour_step "A grant by hand for 3 s, and its expiry"
  "${ctl[@]}" grant 203.0.113.10 ssh-only --for 3s || return 1
  _app_in "$tag" client "${ssh[@]}" true || { _tour_fail "ssh with the manual grant"; return 1; }
  sleep 3.5
  if _app_in "$tag" client "${ssh[@]}" true 2>/dev/null; then
    _tour_fail "ssh still works after expiry"
    return 1
  fi
  echo "after expiry: refused/timed out"

  _tour_step "The real knockd client knocks the knockd-style door (7001,8001,9001): its start_command runs"
  local knocker=("$bin/tools/knock/knockgate-knock")
  command -v knock >/dev/null && knocker=(knock)
  _app_in "$tag" client "${knocker[@]}" -v 203.0.113.1 7001 8001 9001
  for i in $(seq 50); do
    grep -q "open  203.0.113.10" "$KG_LAB_DIR/commands.log" 2>/dev/null && break
    sleep 0.1
  done
  grep "open  203.0.113.10" "$KG_LAB_DIR/commands.log" 2>/dev/null | tail -1 ||
    { _tour_fail "the knockd-style door's start_command did not run"; return 1; }
  echo "(its stop_command runs after cmd_timeout = 30 s; both lines: $KG_LAB_DIR/commands.log)"

  _tour_step "The audit log"
  "${ctl[@]}" audit --limit 12 || return 1
  echo
  echo "tour: passed"
}
