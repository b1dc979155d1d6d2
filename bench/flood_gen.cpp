// flood_gen: sends TCP SYNs (or UDP datagrams) from spoofed, ever-new IPv4 sources at a
// paced rate through an AF_PACKET socket, for the capture flood benchmark. It only ever
// runs inside the benchmark's own client namespace, toward the lab gateway's address.
//
//   flood_gen IFACE DST_MAC DST_IP PORT[,PORT...] RATE_PPS SECONDS [udp|spa]
//
// `spa`: UDP datagrams carrying 204 bytes of base64 text (a real packet's length), so an
// SPA door must compute an HMAC for each one before refusing it.
//
// Sources walk 10.128.0.0/9 (never the lab's own ranges) so each packet is a new source:
// the worst case for a knock matcher, every packet starts an attempt. Prints what it sent.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

uint16_t csum(const void* data, size_t len, uint32_t sum = 0) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i + 1 < len; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (len & 1U) sum += static_cast<uint32_t>(p[len - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

bool parse_mac(const char* s, uint8_t out[6]) {
  unsigned v[6];
  if (std::sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return false;
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(v[i]);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s IFACE DST_MAC DST_IP PORT[,PORT..] RATE_PPS SECONDS [udp]\n", argv[0]);
    return 2;
  }
  const std::string ifname = argv[1];
  uint8_t dmac[6];
  if (!parse_mac(argv[2], dmac)) return std::fprintf(stderr, "bad mac\n"), 2;
  in_addr dst{};
  if (inet_pton(AF_INET, argv[3], &dst) != 1) return std::fprintf(stderr, "bad ip\n"), 2;
  std::vector<uint16_t> ports;
  for (char* tok = std::strtok(argv[4], ","); tok; tok = std::strtok(nullptr, ","))
    ports.push_back(static_cast<uint16_t>(std::atoi(tok)));
  const double rate = std::atof(argv[5]);
  const double seconds = std::atof(argv[6]);
  const bool spa = argc > 7 && std::string(argv[7]) == "spa";
  const bool udp = spa || (argc > 7 && std::string(argv[7]) == "udp");
  constexpr size_t kSpaPayload = 204;
  static const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

  const int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
  if (fd < 0) return std::perror("socket"), 1;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) return std::perror("SIOCGIFHWADDR"), 1;
  uint8_t smac[6];
  std::memcpy(smac, ifr.ifr_hwaddr.sa_data, 6);
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  sll.sll_halen = 6;
  std::memcpy(sll.sll_addr, dmac, 6);

  constexpr size_t kBatch = 64;
  const size_t l4len = spa ? 8 + kSpaPayload : udp ? 8 + 1 : 20;
  const size_t frame_len = 14 + 20 + l4len;
  const size_t slot = spa ? 256 : 64;
  std::vector<uint8_t> frames(kBatch * slot, 0);
  std::vector<iovec> iov(kBatch);
  std::vector<mmsghdr> msgs(kBatch);
  uint32_t src = 0x0a800001;  // 10.128.0.1
  uint64_t sent = 0, seq = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto interval = std::chrono::duration<double>(1.0 / rate);
  while (true) {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start).count();
    if (elapsed >= seconds) break;
    const auto due = static_cast<uint64_t>(elapsed * rate);
    if (sent >= due) {
      std::this_thread::sleep_for(interval * std::min<double>(kBatch, 16));
      continue;
    }
    const size_t n = std::min<uint64_t>(kBatch, due - sent);
    for (size_t i = 0; i < n; ++i) {
      uint8_t* f = &frames[i * slot];
      std::memcpy(f, dmac, 6);
      std::memcpy(f + 6, smac, 6);
      f[12] = 0x08;
      f[13] = 0x00;
      uint8_t* ip = f + 14;
      std::memset(ip, 0, 20 + l4len);
      ip[0] = 0x45;
      const auto tot = static_cast<uint16_t>(20 + l4len);
      ip[2] = static_cast<uint8_t>(tot >> 8);
      ip[3] = static_cast<uint8_t>(tot);
      ip[8] = 64;
      ip[9] = udp ? 17 : 6;
      const uint32_t s = htonl(src);
      std::memcpy(ip + 12, &s, 4);
      std::memcpy(ip + 16, &dst, 4);
      src = src + 1 >= 0x0affffff ? 0x0a800001 : src + 1;
      const uint16_t ic = csum(ip, 20);
      ip[10] = static_cast<uint8_t>(ic >> 8);
      ip[11] = static_cast<uint8_t>(ic);
      uint8_t* l4 = ip + 20;
      const uint16_t sport = static_cast<uint16_t>(1024 + (seq % 60000));
      const uint16_t dport = ports[seq % ports.size()];
      ++seq;
      l4[0] = static_cast<uint8_t>(sport >> 8);
      l4[1] = static_cast<uint8_t>(sport);
      l4[2] = static_cast<uint8_t>(dport >> 8);
      l4[3] = static_cast<uint8_t>(dport);
      if (spa) {
        l4[4] = static_cast<uint8_t>(l4len >> 8);
        l4[5] = static_cast<uint8_t>(l4len);
        uint64_t x = seq * 0x9e3779b97f4a7c15ULL + 1;
        for (size_t k = 0; k < kSpaPayload; ++k) {
          x ^= x >> 12;
          x ^= x << 25;
          x ^= x >> 27;
          l4[8 + k] = static_cast<uint8_t>(kB64[(x * 0x2545f4914f6cdd1dULL) >> 58]);
        }
      } else if (udp) {
        l4[5] = 9;
      } else {
        l4[12] = 0x50;
        l4[13] = 0x02;  // SYN
        l4[14] = 0x72;
        l4[15] = 0x10;
      }
      // L4 checksum over the pseudo-header.
      uint32_t ps = 0;
      ps += (ntohl(s) >> 16) + (ntohl(s) & 0xffff);
      ps += (ntohl(dst.s_addr) >> 16) + (ntohl(dst.s_addr) & 0xffff);
      ps += ip[9];
      ps += static_cast<uint32_t>(l4len);
      const uint16_t c = csum(l4, l4len, ps);
      uint8_t* cp = udp ? l4 + 6 : l4 + 16;
      cp[0] = static_cast<uint8_t>(c >> 8);
      cp[1] = static_cast<uint8_t>(c);
      iov[i] = {f, frame_len};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &sll;
      msgs[i].msg_hdr.msg_namelen = sizeof sll;
    }
    const int r = sendmmsg(fd, msgs.data(), static_cast<unsigned>(n), 0);
    if (r < 0) {
      if (errno == ENOBUFS || errno == EAGAIN) continue;
      std::perror("sendmmsg");
      return 1;
    }
    sent += static_cast<uint64_t>(r);
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("sent %llu packets in %.3f s (%.0f pkt/s) from %llu distinct sources\n",
              static_cast<unsigned long long>(sent), took, static_cast<double>(sent) / took,
              static_cast<unsigned long long>(std::min<uint64_t>(sent, 0x7fffff)));
  close(fd);
  return 0;
}
