"""The console in a real browser (Debian's Chromium via playwright-core, installed into the
build directory at test time): login, live grant from a knock in the namespace lab without
reload, revoke from the UI (and the client's new connection fails), audit log shows both.
Screenshots land in BUILD/webd-screenshots/. Skips (77) without chromium, node/npm or the
npm registry."""
import json
import os
import shutil
import subprocess
import sys
import time
import unittest

import kglab
import webdlib

DEPS = os.path.join(webdlib.BUILD, "browser-deps")
SCRIPT = os.path.join(kglab.SOURCE_DIR, "tests", "browser", "console.mjs")
SHOTS = os.path.join(webdlib.BUILD, "webd-screenshots")
VERDICTD = os.path.join(webdlib.BUILD, "daemons", "verdictd", "knockgate-verdictd")


def browser_skip_reason():
    for tool in ("/usr/bin/chromium", shutil.which("node"), shutil.which("npm")):
        if not tool or not os.path.exists(tool):
            return "needs chromium, node and npm (scripts/deps.sh test)"
    if not os.path.isdir(os.path.join(DEPS, "node_modules", "playwright-core")):
        os.makedirs(DEPS, exist_ok=True)
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", DEPS,
                            "playwright-core@1"], capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            return "npm install playwright-core failed: " + r.stderr[-300:]
    return None


class ConsoleBrowserTest(unittest.TestCase):
    def test_login_live_grant_revoke_audit(self):
        reason = browser_skip_reason()
        if reason:
            self.skipTest(reason)
        os.makedirs(SHOTS, exist_ok=True)
        with kglab.Lab() as lab:
            app = webdlib.Appliance(lab)
            app.set_password()
            app.start(captured=True)
            if os.path.exists(VERDICTD):
                lab.start("gw", [VERDICTD, "-c", app.conf], os.path.join(app.w, "verdictd.out"))
            lab.start("ssh", ["nc", "-lk", "22"], lab.path("ssh-nc.out"))  # the exposed service
            knock = ["ip", "netns", "exec", lab.ns("client"), webdlib.KNOCK, kglab.GW_WAN4,
                     "7000", "8000", "9000"]
            env = dict(os.environ, NODE_PATH=os.path.join(DEPS, "node_modules"),
                       KG_KNOCK_CMD=json.dumps(knock), KG_KNOCK_SOURCE=kglab.CLIENT4,
                       KG_PROBE_CMD=json.dumps(["ip", "netns", "exec", lab.ns("client"), "nc",
                                                "-z", "-w", "2", kglab.GW_WAN4, "2222"]),
                       HOME=lab.dir("home"))
            # The module resolves playwright-core next to itself: run a copy inside DEPS.
            script = os.path.join(DEPS, "console.mjs")
            shutil.copy(SCRIPT, script)
            r = lab.run("gw", ["node", script, "http://127.0.0.1:%d/" % app.port,
                               webdlib.PASSWORD, SHOTS], timeout=90, check=False, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            result = json.loads(r.stdout.strip().splitlines()[-1])
            self.assertTrue(result["ok"], result)
            self.assertEqual(result["console_errors"], [], result)
            self.assertFalse(result["phone_overflow"], "dashboard scrolls sideways on a phone")
            self.assertIn("skip", result["first_focus"])
            for shot in ("login.png", "dashboard.png", "config.png", "grant.png", "phone.png"):
                self.assertGreater(os.path.getsize(os.path.join(SHOTS, shot)), 5000, shot)
            if not result.get("grants_api"):
                self.skipTest("UI flow passed; live grant/revoke/audit part needs policyd's "
                              "control commands and subscription (grants work not merged)")
            kinds = " ".join(result["audit_kinds"])
            self.assertIn("grant", kinds)
            self.assertIn("revoke", kinds)
            # While granted the client reaches the exposed port; after the revoke from the
            # UI a new connection fails. The first half needs verdictd (NEW flows are queued
            # to it and dropped without it, fail-closed).
            if not os.path.exists(VERDICTD):
                self.skipTest("UI flow passed (grant live, revoke, audit); the connection check "
                              "needs knockgate-verdictd (not merged yet)")
            self.assertEqual(result["probe_granted"], 0, "granted client cannot reach tcp/2222")
            self.assertNotEqual(result["probe_revoked"], 0,
                                "client still reaches tcp/2222 after revoke")


if __name__ == "__main__":
    kglab.main()
