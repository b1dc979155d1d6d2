#include "policyd/revocation_journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

namespace kg::policyd {

namespace {

// Slot layout (little-endian): magic "KGRV", CRC-32 of bytes 8..63, grant id, created_ns,
// ended_ns, length of ended_by, ended_by. An all-zero slot is free.
constexpr std::array<uint8_t, 4> kMagic = {'K', 'G', 'R', 'V'};
using Record = std::array<uint8_t, RevocationJournal::kRecordSize>;

uint32_t crc32(const uint8_t* data, size_t size) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void put_le(uint8_t* out, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint64_t get_le(const uint8_t* in, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(in[i]) << (8 * i);
  return v;
}

Record encode(int64_t grant_id, int64_t created_ns, int64_t ended_ns, const std::string& by) {
  Record r{};
  std::memcpy(r.data(), kMagic.data(), kMagic.size());
  put_le(r.data() + 8, static_cast<uint64_t>(grant_id), 8);
  put_le(r.data() + 16, static_cast<uint64_t>(created_ns), 8);
  put_le(r.data() + 24, static_cast<uint64_t>(ended_ns), 8);
  const size_t n = std::min(by.size(), RevocationJournal::kMaxBy);
  r[32] = static_cast<uint8_t>(n);
  std::memcpy(r.data() + 33, by.data(), n);
  put_le(r.data() + 4, crc32(r.data() + 8, r.size() - 8), 4);
  return r;
}

bool decode(const Record& r, Tombstone& out) {
  if (std::memcmp(r.data(), kMagic.data(), kMagic.size()) != 0) return false;
  if (get_le(r.data() + 4, 4) != crc32(r.data() + 8, r.size() - 8)) return false;
  const size_t n = r[32];
  if (n > RevocationJournal::kMaxBy) return false;
  out.grant_id = static_cast<int64_t>(get_le(r.data() + 8, 8));
  out.created_ns = static_cast<int64_t>(get_le(r.data() + 16, 8));
  out.ended_ns = static_cast<int64_t>(get_le(r.data() + 24, 8));
  out.ended_by.assign(reinterpret_cast<const char*>(r.data() + 33), n);
  return out.grant_id > 0;
}

Error errno_error(const std::string& what, const std::string& path, int err) {
  return Error{"revocation journal " + path + ": " + what + ": " + std::strerror(err)};
}

Result<Ok> pwrite_all(int fd, const uint8_t* data, size_t size, off_t offset) {
  while (size > 0) {
    const ssize_t n = ::pwrite(fd, data, size, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{std::strerror(errno)};
    }
    data += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return Ok{};
}

}  // namespace

Result<RevocationJournal> RevocationJournal::open(const std::string& path) {
  RevocationJournal j;
  j.path_ = path;
  j.fd_ = UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640));
  if (!j.fd_.valid()) return errno_error("cannot open", path, errno);
  struct stat st {};
  if (::fstat(j.fd_.get(), &st) != 0) return errno_error("fstat", path, errno);
  if (!S_ISREG(st.st_mode)) return Error{"revocation journal " + path + ": not a regular file"};
  const off_t full = static_cast<off_t>(kSlots * kRecordSize);
  j.used_.assign(kSlots, false);
  // Read what fits in the file as it is; everything from its end on is free.
  const size_t have = std::min<size_t>(static_cast<size_t>(st.st_size), kSlots * kRecordSize);
  std::vector<uint8_t> buf(have);
  size_t got = 0;
  while (got < have) {
    const ssize_t n = ::pread(j.fd_.get(), buf.data() + got, have - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read", path, errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  Record zero{};
  for (size_t slot = 0; (slot + 1) * kRecordSize <= got; ++slot) {
    Record r;
    std::memcpy(r.data(), buf.data() + slot * kRecordSize, kRecordSize);
    Tombstone t;
    if (decode(r, t)) {
      t.slot = slot;
      j.used_[slot] = true;
      ++j.in_use_;
      j.loaded_.push_back(std::move(t));
    } else if (r != zero) {
      // A torn or foreign slot: free it now, while the disk is known to be writable.
      if (auto w = pwrite_all(j.fd_.get(), zero.data(), zero.size(),
                              static_cast<off_t>(slot * kRecordSize));
          !w) {
        return Error{"revocation journal " + path +
                     ": clearing a damaged slot: " + w.error().message};
      }
    }
  }
  if (st.st_size < full) {
    // Real zeros, not a hole or fallocate's unwritten extents: the blocks are allocated
    // and initialised now, so later tombstones only overwrite them.
    std::vector<uint8_t> zeros(static_cast<size_t>(full - st.st_size), 0);
    if (auto w = pwrite_all(j.fd_.get(), zeros.data(), zeros.size(), st.st_size); !w) {
      return Error{"revocation journal " + path + ": cannot reserve " + std::to_string(full) +
                   " bytes: " + w.error().message};
    }
    if (::fsync(j.fd_.get()) != 0) return errno_error("fsync", path, errno);
  }
  return j;
}

Result<size_t> RevocationJournal::add(int64_t grant_id, int64_t created_ns, int64_t ended_ns,
                                      const std::string& ended_by) {
  if (!fd_.valid()) return Error{"revocation journal is not open"};
  if (in_use_ >= used_.size()) {
    return Error{"revocation journal " + path_ + " is full (" + std::to_string(used_.size()) +
                 " revocations waiting for the database)"};
  }
  size_t slot = next_;
  while (used_[slot]) slot = (slot + 1) % used_.size();
  const Record r = encode(grant_id, created_ns, ended_ns, ended_by);
  if (auto w = pwrite_all(fd_.get(), r.data(), r.size(), static_cast<off_t>(slot * kRecordSize));
      !w) {
    return Error{"revocation journal " + path_ + ": " + w.error().message};
  }
  used_[slot] = true;
  ++in_use_;
  next_ = (slot + 1) % used_.size();
  return slot;
}

Result<Ok> RevocationJournal::clear(size_t slot) {
  if (!fd_.valid() || slot >= used_.size() || !used_[slot]) return Ok{};
  const Record zero{};
  if (auto w =
          pwrite_all(fd_.get(), zero.data(), zero.size(), static_cast<off_t>(slot * kRecordSize));
      !w) {
    return Error{"revocation journal " + path_ + ": " + w.error().message};
  }
  used_[slot] = false;
  --in_use_;
  return Ok{};
}

Result<Ok> RevocationJournal::sync() {
  if (!fd_.valid()) return Ok{};
  if (::fdatasync(fd_.get()) != 0) return errno_error("fdatasync", path_, errno);
  return Ok{};
}

}  // namespace kg::policyd
