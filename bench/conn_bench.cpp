// TCP connection-rate and connect-latency load for bench/verdictd_bench.py (runs inside the
// namespace lab only).
//   conn_bench server PORT                  accept and close, forever (one thread per core)
//   conn_bench client ADDR PORT SECONDS CONCURRENCY
//     CONCURRENCY threads each connect (blocking), then close, in a loop.
//   conn_bench eclient ADDR PORT SECONDS INFLIGHT
//     event-driven, the shape of wrk/h2load/proxies: one thread per core keeps its share
//     of INFLIGHT non-blocking connects outstanding (epoll), closing each when it
//     completes and opening the next.
//   Both print one line
//     "conns=N failures=F rate=R p50_us=.. p99_us=.. max_us=.. stalls_1s=S".
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int server(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 4096) != 0) {
    std::perror("bind/listen");
    return 1;
  }
  std::printf("listening\n");
  std::fflush(stdout);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([fd] {
      for (;;) {
        const int c = accept(fd, nullptr, nullptr);
        if (c >= 0) close(c);
      }
    });
  }
  for (auto& t : threads) t.join();
  return 0;
}

int report(std::vector<double>& all_us, uint64_t failures, double seconds);

// What the load threads of both clients share: the stop flag, the failure count and the
// connect times each thread hands in when it ends.
struct Run {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> failures{0};
  std::mutex mu;
  std::vector<double> all_us;
  std::vector<std::thread> threads;

  void hand_in(const std::vector<double>& us) {
    std::lock_guard<std::mutex> lock(mu);
    all_us.insert(all_us.end(), us.begin(), us.end());
  }
  // Lets the threads run for `seconds`, stops them and prints the line.
  int finish(double seconds) {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& t : threads) t.join();
    return report(all_us, failures.load(), seconds);
  }
};

int client(const char* addr, uint16_t port, double seconds, int concurrency) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, addr, &a.sin_addr) != 1) return 2;
  Run run;
  for (int t = 0; t < concurrency; ++t) {
    run.threads.emplace_back([&] {
      std::vector<double> us;
      us.reserve(1 << 16);
      while (!run.stop.load(std::memory_order_relaxed)) {
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        // RST on close: no TIME_WAIT pile-up on the client's ports.
        linger lg{1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        const auto t0 = Clock::now();
        const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
        const auto t1 = Clock::now();
        if (rc == 0) {
          us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        } else {
          run.failures.fetch_add(1);
        }
        close(fd);
      }
      run.hand_in(us);
    });
  }
  return run.finish(seconds);
}

// Event-driven client: each thread keeps `inflight` non-blocking connects outstanding.
int eclient(const char* addr, uint16_t port, double seconds, int inflight) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, addr, &a.sin_addr) != 1) return 2;
  const int nthreads = std::max(1, std::min(inflight, 2));
  Run run;
  for (int t = 0; t < nthreads; ++t) {
    const int share = inflight / nthreads + (t < inflight % nthreads ? 1 : 0);
    run.threads.emplace_back([&, share] {
      std::vector<double> us;
      us.reserve(1 << 18);
      const int ep = epoll_create1(EPOLL_CLOEXEC);
      std::vector<Clock::time_point> started(65536);
      auto open_one = [&] {
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0 || fd >= static_cast<int>(started.size())) {
          if (fd >= 0) close(fd);
          run.failures.fetch_add(1);
          return;
        }
        linger lg{1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        started[static_cast<size_t>(fd)] = Clock::now();
        const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
        if (rc != 0 && errno != EINPROGRESS) {
          run.failures.fetch_add(1);
          close(fd);
          return;
        }
        epoll_event ev{};
        ev.events = EPOLLOUT | EPOLLONESHOT;
        ev.data.fd = fd;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      };
      for (int i = 0; i < share; ++i) open_one();
      epoll_event evs[256];
      while (!run.stop.load(std::memory_order_relaxed)) {
        const int n = epoll_wait(ep, evs, 256, 100);
        const auto now = Clock::now();
        for (int i = 0; i < n; ++i) {
          const int fd = evs[i].data.fd;
          int err = 0;
          socklen_t len = sizeof err;
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
          if (err == 0) {
            us.push_back(
                std::chrono::duration<double, std::micro>(now - started[static_cast<size_t>(fd)])
                    .count());
          } else {
            run.failures.fetch_add(1);
          }
          close(fd);  // also removes it from the epoll set
          open_one();
        }
      }
      close(ep);
      run.hand_in(us);
    });
  }
  return run.finish(seconds);
}

int report(std::vector<double>& all_us, uint64_t failures, double seconds) {
  std::sort(all_us.begin(), all_us.end());
  auto pct = [&](double p) {
    if (all_us.empty()) return 0.0;
    return all_us[std::min(all_us.size() - 1,
                           static_cast<size_t>(p * static_cast<double>(all_us.size())))];
  };
  const auto stalls =
      std::count_if(all_us.begin(), all_us.end(), [](double v) { return v > 900000; });
  std::printf(
      "conns=%zu failures=%llu rate=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f stalls_1s=%ld\n",
      all_us.size(), static_cast<unsigned long long>(failures),
      static_cast<double>(all_us.size()) / seconds, pct(0.5), pct(0.99),
      all_us.empty() ? 0.0 : all_us.back(), static_cast<long>(stalls));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "server") == 0) {
    return server(static_cast<uint16_t>(std::atoi(argv[2])));
  }
  if (argc == 6 && std::strcmp(argv[1], "eclient") == 0) {
    return eclient(argv[2], static_cast<uint16_t>(std::atoi(argv[3])), std::atof(argv[4]),
                   std::atoi(argv[5]));
  }
  if (argc == 6 && std::strcmp(argv[1], "client") == 0) {
    return client(argv[2], static_cast<uint16_t>(std::atoi(argv[3])), std::atof(argv[4]),
                  std::atoi(argv[5]));
  }
  std::fprintf(stderr,
               "usage: conn_bench server PORT | client|eclient ADDR PORT SECONDS CONCURRENCY\n");
  return 2;
}
