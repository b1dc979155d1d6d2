// Store's transaction handle: the same RAII rules for every backend.
#include "policyd/store.h"

#include <utility>

namespace kg::policyd {

Result<Store::Transaction> Store::begin() {
  auto begun = begin_transaction();
  if (!begun) return begun.error();
  return Transaction(this);
}

Store::Transaction::Transaction(Transaction&& other) noexcept
    : store_(std::exchange(other.store_, nullptr)) {}

Store::Transaction::~Transaction() {
  if (store_ != nullptr) store_->rollback_transaction();
}

Result<Ok> Store::Transaction::commit() {
  if (store_ == nullptr) return Error{"commit: transaction is not active"};
  Store* store = std::exchange(store_, nullptr);
  return store->commit_transaction();
}

}  // namespace kg::policyd
