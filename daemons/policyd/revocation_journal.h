// The revocation journal: a small file next to the database (`DATABASE-revocations`) that
// remembers revocations the database has not recorded yet, so that a revoked grant stays
// revoked across a restart even when its `revoked` row never reached SQLite (disk full,
// I/O error).
//
// Why a separate, preallocated file rather than SQLite: a revocation must never depend on
// free disk space. SQLite needs new pages (WAL frames) for every commit; when the
// filesystem is full every commit fails. This file is written in full (zeros) when policyd
// starts, so its blocks are allocated then; a tombstone later overwrites 64 bytes inside
// them with pwrite(2) and needs no new block on a filesystem that overwrites in place
// (ext4, xfs, tmpfs). Copy-on-write filesystems (btrfs, zfs) allocate on every overwrite
// and give no such guarantee. Fixed-size slots with a checksum make a torn write harmless
// (the slot reads as free) and let a slot be freed in place once the database has the row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace kg::policyd {

struct Tombstone {
  int64_t grant_id = 0;
  // The grant's creation time: binds the tombstone to that grant, not to an id a new
  // database (the old one deleted, the journal left) gives another grant.
  int64_t created_ns = 0;
  int64_t ended_ns = 0;  // CLOCK_REALTIME ns of the revocation
  std::string ended_by;  // who revoked it (truncated to kMaxBy bytes)
  size_t slot = 0;       // where it lives in the file
};

class RevocationJournal {
 public:
  static constexpr size_t kRecordSize = 64;
  static constexpr size_t kSlots = 16384;  // 1 MiB; more pending revocations stay in memory
  static constexpr size_t kMaxBy = 31;

  // Opens or creates PATH (mode 0640 under policyd's umask), writes it out to its full size
  // and syncs it, and reads the tombstones it holds. Fails (with the path and errno text)
  // when the space cannot be reserved: policyd does not start without it.
  static Result<RevocationJournal> open(const std::string& path);
  RevocationJournal() = default;
  RevocationJournal(RevocationJournal&&) noexcept = default;
  RevocationJournal& operator=(RevocationJournal&&) noexcept = default;
  RevocationJournal(const RevocationJournal&) = delete;
  RevocationJournal& operator=(const RevocationJournal&) = delete;

  // The tombstones found at open().
  const std::vector<Tombstone>& loaded() const { return loaded_; }
  // Writes a tombstone into a free slot (no fsync: call sync()); returns the slot.
  Result<size_t> add(int64_t grant_id, int64_t created_ns, int64_t ended_ns,
                     const std::string& ended_by);
  // Frees a slot (zeros in place).
  Result<Ok> clear(size_t slot);
  // fdatasync: the tombstones written so far survive a power loss.
  Result<Ok> sync();
  size_t in_use() const { return in_use_; }
  const std::string& path() const { return path_; }

 private:
  UniqueFd fd_;
  std::string path_;
  std::vector<bool> used_;
  size_t in_use_ = 0;
  size_t next_ = 0;  // where the search for a free slot starts
  std::vector<Tombstone> loaded_;
};

}  // namespace kg::policyd
