#include "mesh/record_cache.hpp"

namespace meshd::mesh {

RecordCache::RecordCache(crypto::PublicKey root_pub, std::size_t max_records)
    : root_(root_pub), max_(max_records) {}

bool RecordCache::enrollment_known(const crypto::EnrollmentCert& e) const {
  auto it = enrollments_.find(e.sig);
  return it != enrollments_.end() && it->second == e.signed_bytes();
}

void RecordCache::make_room() {
  if (records_.size() < max_) return;
  std::erase_if(records_, [](const auto& kv) { return kv.second.record.use_count() == 1; });
}

Result<std::shared_ptr<const NodeRecord>> RecordCache::verify(const NodeRecord& r,
                                                              std::uint64_t now_s) {
  auto it = records_.find(r.sig);
  if (it != records_.end() && *it->second.record == r) {
    ++hits_;
    Status times = crypto::check_chain_times(r.chain, now_s);
    if (!times.ok()) return times.error();
    return it->second.record;
  }
  ++misses_;
  if (!r.verify_signature()) {  // also bounds locators and VNIs
    return make_error("mesh.bad_signature", "node record not signed by its node");
  }
  const bool enrollment_cached = enrollment_known(r.chain.enrollment);
  Status chain = enrollment_cached ? crypto::verify_chain_below_root(r.chain, now_s)
                                   : crypto::verify_chain(root_, r.chain, now_s);
  if (!chain.ok()) return chain.error();
  if (!enrollment_cached) {
    if (enrollments_.size() >= kEnrollmentsMax) enrollments_.clear();
    enrollments_.emplace(r.chain.enrollment.sig, r.chain.enrollment.signed_bytes());
  }
  auto shared = std::make_shared<const NodeRecord>(r);
  make_room();
  if (records_.size() < max_) {
    records_.insert_or_assign(r.sig, Entry{shared});
  }
  return shared;
}

std::shared_ptr<const crypto::Signature> RecordCache::verify_alive(const NodeId& node,
                                                                  std::uint64_t inc,
                                                                  const crypto::Signature& sig) {
  const auto key = std::make_pair(node, inc);
  auto it = proofs_.find(key);
  if (it != proofs_.end() && *it->second == sig) {
    ++hits_;
    return it->second;
  }
  ++misses_;
  if (!verify_alive_signature(node, inc, sig)) return nullptr;
  auto shared = std::make_shared<const crypto::Signature>(sig);
  if (proofs_.size() >= max_) {
    std::erase_if(proofs_, [](const auto& kv) { return kv.second.use_count() == 1; });
  }
  if (proofs_.size() < max_) proofs_.insert_or_assign(key, shared);
  return shared;
}

}  // namespace meshd::mesh
