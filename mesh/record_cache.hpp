// Verified node records, shared. Checking a record costs three Ed25519 verifications
// (the record, its node cert, its enrollment cert); in a large mesh the same record
// arrives many times (gossip retransmits, push-pull, restarts) and every member table
// holds one. The cache verifies a record once, hands out one shared immutable copy,
// and remembers enrollment certs whose root signature checked out (nodes enrolled
// with the same token share one). Time-dependent checks (expiry) run on every use.
//
// One cache per MeshCore by default; the simulator shares one among all its cores
// (as if they were one process), which saves CPU and memory but changes no result:
// a cache hit needs a record equal in every field, signature included.
//
// Bounds: `max_records` records, as many incarnation proofs, and kEnrollmentsMax
// enrollment certs. Overflow: records
// no member table holds any more are forgotten first; if all are in use the new record
// is verified and returned but not cached (proofs likewise). Enrollments: the cache of them is cleared.
// Not thread-safe (one core, or one simulator thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>

#include "crypto/result.hpp"
#include "mesh/types.hpp"

namespace meshd::mesh {

class RecordCache {
 public:
  static constexpr std::size_t kEnrollmentsMax = 4096;

  RecordCache(crypto::PublicKey root_pub, std::size_t max_records);

  // The shared verified copy of `r`: its signature by its node, its chain up to the
  // root, and its certificate times at now_s. Errors: "mesh.bad_signature" (record
  // signature, or too many locators/VNIs), or verify_chain's "cert.*" codes.
  Result<std::shared_ptr<const NodeRecord>> verify(const NodeRecord& r, std::uint64_t now_s);

  // A node's proof of an incarnation (sign_alive), shared, or nullptr if the signature
  // is not the node's. Cached by (node, incarnation) like records.
  std::shared_ptr<const crypto::Signature> verify_alive(const NodeId& node, std::uint64_t inc,
                                                        const crypto::Signature& sig);

  const crypto::PublicKey& root() const { return root_; }
  std::size_t size() const { return records_.size(); }
  std::uint64_t hits() const { return hits_; }
  std::uint64_t misses() const { return misses_; }

 private:
  struct Entry {
    std::shared_ptr<const NodeRecord> record;  // compared in full on a hit
  };
  bool enrollment_known(const crypto::EnrollmentCert& e) const;
  void make_room();

  crypto::PublicKey root_;
  std::size_t max_;
  // Keyed by signature (64 random-looking bytes): ordered map, deterministic.
  std::map<crypto::Signature, Entry> records_;
  std::map<crypto::Signature, Bytes> enrollments_;  // root-verified: sig -> signed bytes
  std::map<std::pair<NodeId, std::uint64_t>, std::shared_ptr<const crypto::Signature>> proofs_;
  std::uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace meshd::mesh
