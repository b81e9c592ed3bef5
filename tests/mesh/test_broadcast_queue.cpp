// Transmit-limited broadcast queue alone (mesh/broadcast_queue.hpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <random>
#include <vector>

#include "mesh/broadcast_queue.hpp"

using namespace meshd;
using namespace meshd::mesh;
using Key = BroadcastQueue::Key;

namespace {

Key key(std::uint8_t kind, std::uint8_t a, std::uint8_t b = 0, std::uint8_t last = 0) {
  Key k{};
  k[0] = kind;
  k[1] = a;
  k[2] = b;
  k[k.size() - 1] = last;
  return k;
}

// `size_bytes` bytes of `tag`: tells entries apart in take()'s output.
Bytes payload(std::uint8_t tag, std::size_t size_bytes = 1) { return Bytes(size_bytes, tag); }

std::vector<std::uint8_t> tags(const std::vector<Bytes>& out) {
  std::vector<std::uint8_t> t;
  for (const Bytes& b : out) t.push_back(b.empty() ? 0 : b[0]);
  return t;
}

using Tags = std::vector<std::uint8_t>;

// The previous implementation (a vector, sorted on every take), kept as the
// reference: same selection rules, with the skip bound and the documented overflow
// tie-break (oldest among the most transmitted) applied.
class ReferenceQueue {
 public:
  explicit ReferenceQueue(std::size_t max) : max_(max) {}

  std::size_t push(const Key& k, Bytes encoded) {
    for (Entry& e : entries_) {
      if (e.key == k) {
        e.encoded = std::move(encoded);
        e.transmits = 0;
        e.order = next_order_++;
        return 0;
      }
    }
    if (max_ == 0) return 1;
    std::size_t dropped = 0;
    if (entries_.size() >= max_) {
      auto worst =
          std::max_element(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
            return a.transmits != b.transmits ? a.transmits < b.transmits : a.order > b.order;
          });
      entries_.erase(worst);
      dropped = 1;
    }
    entries_.push_back(Entry{k, std::move(encoded), 0, next_order_++});
    return dropped;
  }

  std::size_t erase_prefix(const Key& k, std::size_t prefix_len) {
    prefix_len = std::min(prefix_len, k.size());
    return std::erase_if(entries_, [&](const Entry& e) {
      return std::equal(k.begin(), k.begin() + static_cast<std::ptrdiff_t>(prefix_len),
                        e.key.begin());
    });
  }

  std::vector<Bytes> take(std::size_t budget_bytes, std::size_t limit) {
    std::vector<Bytes> out;
    if (entries_.empty()) return out;
    std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
      return a.transmits != b.transmits ? a.transmits < b.transmits : a.order < b.order;
    });
    std::size_t used = 0;
    std::size_t skipped = 0;
    for (Entry& e : entries_) {
      if (!out.empty() && used + e.encoded.size() > budget_bytes) {
        if (++skipped >= BroadcastQueue::kTakeSkipMax) {
          ++skip_bound_hits;
          break;
        }
        continue;
      }
      used += e.encoded.size();
      out.push_back(e.encoded);
      ++e.transmits;
      if (used >= budget_bytes) break;
    }
    std::erase_if(entries_, [limit](const Entry& e) { return e.transmits >= limit; });
    return out;
  }

  std::size_t size() const { return entries_.size(); }
  void clear() { entries_.clear(); }

  std::size_t skip_bound_hits = 0;  // takes that stopped at kTakeSkipMax

 private:
  struct Entry {
    Key key{};
    Bytes encoded;
    std::size_t transmits = 0;
    std::uint64_t order = 0;
  };
  std::size_t max_;
  std::uint64_t next_order_ = 0;
  std::vector<Entry> entries_;
};

}  // namespace

TEST_CASE("broadcast queue: least transmitted first, oldest first on a tie") {
  BroadcastQueue q(16);
  q.push(key(1, 1), payload(1));
  q.push(key(1, 2), payload(2));
  q.push(key(1, 3), payload(3));
  // Budget 1: one update per call.
  CHECK(tags(q.take(1, 10)) == Tags{1});
  CHECK(tags(q.take(1, 10)) == Tags{2});
  q.push(key(1, 4), payload(4));  // newest, but never sent: ahead of 1 and 2
  CHECK(tags(q.take(1, 10)) == Tags{3});
  CHECK(tags(q.take(1, 10)) == Tags{4});
  CHECK(tags(q.take(1, 10)) == Tags{1});  // all sent once: oldest again
  CHECK(tags(q.take(100, 10)) == (Tags{2, 3, 4, 1}));
  CHECK(q.size() == 4);
}

TEST_CASE("broadcast queue: replacing a key swaps its bytes and resets transmits and order") {
  BroadcastQueue q(16);
  CHECK(q.push(key(1, 1), payload(1)) == 0);
  CHECK(q.push(key(1, 2), payload(2)) == 0);
  CHECK(tags(q.take(100, 3)) == (Tags{1, 2}));
  CHECK(tags(q.take(100, 3)) == (Tags{1, 2}));  // both at 2 transmits, one short of the limit
  CHECK(q.push(key(1, 1), payload(7, 3)) == 0);
  CHECK(q.size() == 2);
  auto out = q.take(1, 3);
  REQUIRE(out.size() == 1);
  CHECK(out[0] == payload(7, 3));        // new bytes, and first: 0 transmits again
  CHECK(tags(q.take(1, 3)) == Tags{7});  // still fewer transmits than 2
  CHECK(tags(q.take(1, 3)) == Tags{2});  // tie at 2: 2 is older; its third transmit
  CHECK(q.size() == 1);
  CHECK(tags(q.take(1, 3)) == Tags{7});  // a fresh three transmits
  CHECK(q.empty());
}

TEST_CASE("broadcast queue: an update leaves after `limit` transmits; a lower limit evicts") {
  BroadcastQueue q(16);
  q.push(key(1, 1), payload(1));
  CHECK(tags(q.take(100, 2)) == Tags{1});
  CHECK(q.size() == 1);
  CHECK(tags(q.take(100, 2)) == Tags{1});
  CHECK(q.empty());
  CHECK(q.take(100, 2).empty());

  q.push(key(1, 1), payload(1));
  q.push(key(1, 2), payload(2));
  q.push(key(1, 3), payload(3));
  CHECK(tags(q.take(1, 5)) == Tags{1});
  CHECK(tags(q.take(1, 5)) == Tags{2});
  // The limit fell to 1 (fewer live members): 1 and 2 have already been sent once
  // and go without being taken again; 3 goes out and leaves too.
  CHECK(tags(q.take(1, 1)) == Tags{3});
  CHECK(q.empty());

  q.push(key(1, 1), payload(1));
  CHECK(tags(q.take(100, 0)) == Tags{1});  // limit 0: sent once, then gone
  CHECK(q.empty());
}

TEST_CASE("broadcast queue: packs the budget, skipping what does not fit, stops when full") {
  BroadcastQueue q(16);
  q.push(key(1, 1), payload(1, 40));
  q.push(key(1, 2), payload(2, 70));
  q.push(key(1, 3), payload(3, 30));
  q.push(key(1, 4), payload(4, 20));
  q.push(key(1, 5), payload(5, 20));
  // 40 + 30 + 20 = 90; 70 and the second 20 do not fit in 100.
  CHECK(tags(q.take(100, 10)) == (Tags{1, 3, 4}));
  // Now 2 and 5 are unsent: 70 + 20 = 90.
  CHECK(tags(q.take(100, 10)) == (Tags{2, 5}));

  BroadcastQueue exact(16);
  exact.push(key(1, 1), payload(1, 50));
  exact.push(key(1, 2), payload(2, 50));
  exact.push(key(1, 3), payload(3, 1));
  CHECK(tags(exact.take(100, 10)) == (Tags{1, 2}));  // budget used up: 3 waits
  CHECK(tags(exact.take(100, 10)) == (Tags{3, 1}));  // 3 + 1 = 51, 2 no longer fits
}

TEST_CASE("broadcast queue: an update larger than the budget still goes out alone") {
  BroadcastQueue q(16);
  q.push(key(1, 1), payload(1, 500));
  q.push(key(1, 2), payload(2, 10));
  auto out = q.take(100, 10);
  REQUIRE(out.size() == 1);
  CHECK(out[0].size() == 500);              // first in order; it uses up the budget by itself
  CHECK(tags(q.take(100, 10)) == Tags{2});  // the oversized one (sent once) is skipped
  out = q.take(0, 10);                      // budget 0: still one, the older
  REQUIRE(out.size() == 1);
  CHECK(out[0].size() == 500);
  CHECK(tags(q.take(0, 10)) == Tags{2});
  CHECK(q.size() == 2);
}

TEST_CASE("broadcast queue: take stops after kTakeSkipMax updates that do not fit") {
  auto fill = [](BroadcastQueue& q, std::size_t large) {
    q.push(key(1, 0), payload(1, 10));
    for (std::size_t i = 0; i < large; ++i) {
      q.push(key(2, static_cast<std::uint8_t>(i)), payload(2, 100));
    }
    q.push(key(3, 0), payload(3, 10));
  };
  BroadcastQueue within(1024);
  fill(within, BroadcastQueue::kTakeSkipMax - 1);
  CHECK(tags(within.take(50, 10)) == (Tags{1, 3}));
  BroadcastQueue beyond(1024);
  fill(beyond, BroadcastQueue::kTakeSkipMax);
  CHECK(tags(beyond.take(50, 10)) == Tags{1});  // the scan gave up before reaching 3
}

TEST_CASE("broadcast queue: when full, drops the most transmitted, the oldest of those on a tie") {
  BroadcastQueue q(3);
  CHECK(q.push(key(1, 1), payload(1)) == 0);
  CHECK(q.push(key(1, 2), payload(2)) == 0);
  CHECK(q.push(key(1, 3), payload(3)) == 0);
  CHECK(tags(q.take(1, 10)) == Tags{1});
  CHECK(tags(q.take(1, 10)) == Tags{2});
  CHECK(tags(q.take(1, 10)) == Tags{3});
  CHECK(tags(q.take(1, 10)) == Tags{1});  // transmits: 1 -> 2, 2 -> 1, 3 -> 1
  CHECK(q.push(key(1, 4), payload(4)) == 1);
  CHECK(q.size() == 3);
  CHECK(tags(q.take(100, 10)) == (Tags{4, 2, 3}));  // 1 was dropped
  // Transmits: 4 -> 1, 2 -> 2, 3 -> 2. Tie between 2 and 3: 2 is older and goes.
  CHECK(q.push(key(1, 5), payload(5)) == 1);
  CHECK(tags(q.take(100, 10)) == (Tags{5, 4, 3}));
  // Replacing a queued key never drops.
  CHECK(q.push(key(1, 5), payload(6)) == 0);
  CHECK(q.size() == 3);

  BroadcastQueue none(0);
  CHECK(none.push(key(1, 1), payload(1)) == 1);
  CHECK(none.empty());
  CHECK(none.take(100, 10).empty());
}

TEST_CASE("broadcast queue: erase_prefix removes exactly the keys with that prefix") {
  BroadcastQueue q(64);
  q.push(key(2, 5), payload(1));  // prefix itself (rest zero)
  q.push(key(2, 5, 1), payload(2));
  q.push(key(2, 5, 0xff, 0xff), payload(3));  // last key with the prefix
  q.push(key(2, 4, 0xff, 0xff), payload(4));  // just below
  q.push(key(2, 6), payload(5));              // just above
  q.push(key(1, 5), payload(6));              // same subject, other kind
  q.push(key(3, 5), payload(7));
  CHECK(q.erase_prefix(key(2, 5, 9, 9), 2) == 3);  // bytes past the prefix are ignored
  CHECK(q.size() == 4);
  CHECK(tags(q.take(100, 10)) == (Tags{4, 5, 6, 7}));
  CHECK(q.erase_prefix(key(2, 5), 2) == 0);

  // A prefix longer than the key is the whole key.
  CHECK(q.erase_prefix(key(2, 6, 0, 1), 100) == 0);
  CHECK(q.erase_prefix(key(2, 6), 100) == 1);
  CHECK(q.size() == 3);
  // Kind byte only.
  CHECK(q.erase_prefix(key(3, 0), 1) == 1);
  // Empty prefix: everything.
  CHECK(q.erase_prefix(key(9, 9), 0) == 2);
  CHECK(q.empty());
  // Erased keys can come back, as new.
  CHECK(q.push(key(2, 5, 1), payload(2)) == 0);
  CHECK(tags(q.take(100, 10)) == Tags{2});
  q.clear();
  CHECK(q.empty());
  CHECK(q.take(100, 10).empty());
}

TEST_CASE("broadcast queue: matches the reference model over random operations") {
  struct Config {
    std::size_t max;
    std::size_t size_max_bytes;
    std::size_t budget_max_bytes;
    std::uint8_t ids;
    std::size_t limit;
  };
  // Small queue with frequent overflow; and a long one where many entries do not fit
  // and the skip bound matters.
  for (Config cfg : {Config{32, 200, 600, 24, 4}, Config{400, 300, 400, 250, 12}}) {
    CAPTURE(cfg.max);
    std::mt19937_64 g(0xb0ad);
    auto pick = [&g](std::uint64_t n) { return static_cast<std::size_t>(g() % n); };
    BroadcastQueue q(cfg.max);
    ReferenceQueue ref(cfg.max);
    std::size_t drops = 0;
    std::size_t taken = 0;
    std::size_t erased = 0;
    std::uint8_t tag = 0;
    for (int step = 0; step < 5000; ++step) {
      CAPTURE(step);
      std::size_t op = pick(100);
      auto k = key(static_cast<std::uint8_t>(1 + pick(3)), static_cast<std::uint8_t>(pick(cfg.ids)),
                   static_cast<std::uint8_t>(pick(3)));
      if (op < 60) {
        // Distinct contents per push, so any mix-up shows in take()'s output.
        Bytes b = payload(++tag, 1 + pick(cfg.size_max_bytes));
        b.back() = static_cast<std::uint8_t>(step);
        std::size_t d = q.push(k, b);
        REQUIRE(d == ref.push(k, b));
        drops += d;
      } else if (op < 93) {
        std::size_t budget = pick(cfg.budget_max_bytes + 1);
        // Now and then the limit moves (members come and go), down to 0.
        std::size_t limit = pick(10) == 0 ? pick(cfg.limit * 2) : cfg.limit;
        auto out = q.take(budget, limit);
        REQUIRE(out == ref.take(budget, limit));
        taken += out.size();
      } else if (op < 99) {
        static constexpr std::size_t kLens[] = {0, 1, 2, 3, 40, 41};
        std::size_t len = kLens[pick(std::size(kLens))];
        if (len < 2 && pick(20) != 0) len = 2;  // emptying a third or all: rarely
        std::size_t n = q.erase_prefix(k, len);
        REQUIRE(n == ref.erase_prefix(k, len));
        erased += n;
      } else if (pick(10) == 0) {  // rarely, so the long queue gets long
        q.clear();
        ref.clear();
      }
      REQUIRE(q.size() == ref.size());
      REQUIRE(q.empty() == (ref.size() == 0));
    }
    MESSAGE("max " << cfg.max << ": " << drops << " drops, " << taken << " taken, " << erased
                   << " erased, " << ref.skip_bound_hits << " takes stopped by the skip bound, "
                   << q.size() << " left");
    CHECK(drops > 0);
    CHECK(taken > 0);
    CHECK(erased > 0);
    if (cfg.max > BroadcastQueue::kTakeSkipMax) CHECK(ref.skip_bound_hits > 0);
  }
}
