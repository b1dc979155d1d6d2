#include "captured/capture.h"

#include "captured/filter.h"

namespace kg::captured {

namespace {
struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};
}  // namespace

Result<std::unique_ptr<Capture>> Capture::open(const CaptureOptions& opts) {
  char err[PCAP_ERRBUF_SIZE] = {};
  std::unique_ptr<pcap_t, PcapCloser> p(pcap_create("any", err));
  if (!p) return Error{std::string("pcap_create(any): ") + err};
  auto check = [&](int rc, const char* what) -> Result<Ok> {
    if (rc == 0) return Ok{};
    return Error{std::string(what) + ": " + pcap_statustostr(rc)};
  };
  if (auto r = check(pcap_set_snaplen(p.get(), opts.snaplen), "pcap_set_snaplen"); !r)
    return r.error();
  if (auto r = check(pcap_set_immediate_mode(p.get(), 1), "pcap_set_immediate_mode"); !r)
    return r.error();
  if (auto r = check(pcap_set_buffer_size(p.get(), opts.buffer_bytes), "pcap_set_buffer_size"); !r)
    return r.error();
  const int rc = pcap_activate(p.get());
  if (rc < 0) return Error{std::string("pcap_activate(any): ") + pcap_geterr(p.get())};
  // Cooked v2 carries the interface index, which the filter and the decoder both use.
  if (pcap_set_datalink(p.get(), DLT_LINUX_SLL2) != 0) {
    return Error{std::string("pcap_set_datalink(LINUX_SLL2): ") + pcap_geterr(p.get())};
  }
  if (pcap_setdirection(p.get(), PCAP_D_IN) != 0) {
    return Error{std::string("pcap_setdirection(in): ") + pcap_geterr(p.get())};
  }
  if (pcap_setnonblock(p.get(), 1, err) != 0) return Error{std::string("pcap_setnonblock: ") + err};
  std::unique_ptr<Capture> capture(new Capture(p.release()));
  // Closed until the daemon knows its interfaces: the "any" socket would otherwise queue
  // every interface's traffic. (libpcap drains what arrived before a new filter.)
  if (auto r = capture->set_filter(kMatchNothing); !r) return r.error();
  return capture;
}

Capture::~Capture() {
  pcap_close(pcap_);
}

int Capture::fd() const {
  return pcap_get_selectable_fd(pcap_);
}

int Capture::linktype() const {
  return pcap_datalink(pcap_);
}

Result<Ok> Capture::set_filter(const std::string& expression) {
  bpf_program prog{};
  if (pcap_compile(pcap_, &prog, expression.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    return Error{"filter \"" + expression + "\": " + pcap_geterr(pcap_)};
  }
  const int rc = pcap_setfilter(pcap_, &prog);
  pcap_freecode(&prog);
  if (rc != 0) return Error{std::string("pcap_setfilter: ") + pcap_geterr(pcap_)};
  return Ok{};
}

namespace {
struct DispatchContext {
  const Capture::PacketFn* fn;
  int linktype;
};
void on_packet(u_char* user, const pcap_pkthdr* h, const u_char* bytes) {
  const auto* ctx = reinterpret_cast<const DispatchContext*>(user);
  const int64_t ns = static_cast<int64_t>(h->ts.tv_sec) * 1'000'000'000 +
                     static_cast<int64_t>(h->ts.tv_usec) * 1'000;
  (*ctx->fn)(ns, ctx->linktype, std::span<const uint8_t>(bytes, h->caplen));
}
}  // namespace

Result<int> Capture::dispatch(int max_packets, const PacketFn& fn) {
  DispatchContext ctx{&fn, linktype()};
  const int n = pcap_dispatch(pcap_, max_packets, on_packet, reinterpret_cast<u_char*>(&ctx));
  if (n < 0) return Error{std::string("pcap_dispatch: ") + pcap_geterr(pcap_)};
  return n;
}

CaptureStats Capture::stats() {
  pcap_stat s{};
  if (pcap_stats(pcap_, &s) != 0) return {};
  // pcap's counters are 32-bit and wrap; keep 64-bit totals.
  if (s.ps_recv < last_recv_) wrap_base_recv_ += (1ULL << 32);
  if (s.ps_drop < last_drop_) wrap_base_drop_ += (1ULL << 32);
  last_recv_ = s.ps_recv;
  last_drop_ = s.ps_drop;
  return {wrap_base_recv_ + s.ps_recv, wrap_base_drop_ + s.ps_drop, s.ps_ifdrop};
}

}  // namespace kg::captured
