// A fixed-size array of trivially copyable records for the engine's big tables, allocated
// once. Tables of 2 MiB and more are aligned to 2 MiB and offered to transparent huge
// pages before they are first touched: the packet path reads them at random, and with
// 4 KiB pages nearly every access of a million-source table would also miss the TLB.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace kg::knock {

template <typename T>
class FlatArray {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);

 public:
  FlatArray() = default;
  // Every element is a copy of `fill`.
  FlatArray(size_t count, const T& fill) : size_(count) {
    if (count == 0) return;
    bytes_ = count * sizeof(T);
    const bool huge = bytes_ >= kHugePage;
    const size_t align = huge ? kHugePage : alignof(std::max_align_t);
    bytes_ = (bytes_ + align - 1) / align * align;  // aligned_alloc wants a multiple
    void* raw = std::aligned_alloc(align, bytes_);
    if (raw == nullptr) throw std::bad_alloc();
    // Only a hint: without THP (or with it disabled) this fails and 4 KiB pages are used.
    if (huge) (void)madvise(raw, bytes_, MADV_HUGEPAGE);
    data_ = static_cast<T*>(raw);
    for (size_t i = 0; i < count; ++i) std::memcpy(&data_[i], &fill, sizeof(T));
  }
  ~FlatArray() { std::free(data_); }
  FlatArray(FlatArray&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        bytes_(std::exchange(other.bytes_, 0)) {}
  FlatArray& operator=(FlatArray&& other) noexcept {
    if (this != &other) {
      std::free(data_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  FlatArray(const FlatArray&) = delete;
  FlatArray& operator=(const FlatArray&) = delete;

  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  size_t size() const { return size_; }
  // What the allocation holds, padding included: what memory_bytes() counts.
  size_t allocated_bytes() const { return bytes_; }

 private:
  static constexpr size_t kHugePage = size_t{2} << 20;
  T* data_ = nullptr;
  size_t size_ = 0;
  size_t bytes_ = 0;
};

}  // namespace kg::knock
