"""knockgate-webd out of file descriptors: started under `prlimit --nofile=64:64` with more
connections than it can accept, it must pause accepting rather than spin (under 5 % of one
core), say so once in its log, and answer again within 2 s once the connections close."""
import re
import unittest

import kglab
import webdlib

NOFILE = 64


class WebdEmfileTest(unittest.TestCase):
    def setUp(self):
        self.lab = kglab.Lab(mode="wan")
        self.lab.__enter__()
        try:
            self.app = webdlib.Appliance(self.lab, port=8081)
            self.app.set_password()
            self.app.start(wrapper=["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE)])
        except BaseException:
            self.lab.close()
            raise

    def tearDown(self):
        self.lab.close()

    def test_exhausted_webd_idles_and_recovers(self):
        result = webdlib.exhaust_descriptors(self.app, connections=3 * NOFILE)
        self.assertGreaterEqual(result["open_fds"], NOFILE - 4, "webd did run out")
        self.assertLess(result["cpu_percent"], 5.0,
                        "webd out of descriptors must not spin: %.1f %% of a core"
                        % result["cpu_percent"])
        self.assertIsNotNone(result["recovery_s"], "no answer after the connections closed")
        self.assertLess(result["recovery_s"], 2.0)
        self.assertTrue(self.app.webd.wait_for_output(r"accepting connections again", 5),
                        self.app.webd.output())
        out = self.app.webd.output()
        self.assertIn("open files limit (RLIMIT_NOFILE) is %d" % NOFILE, out,
                      "webd warns at start that the limit is short of max_connections")
        self.assertEqual(len(re.findall(r"cannot accept connections: Too many open files", out)), 1,
                         out)
        self.assertEqual(len(re.findall(r"accepting connections again", out)), 1, out)
        self.assertTrue(self.app.webd.alive())


if __name__ == "__main__":
    kglab.main()
