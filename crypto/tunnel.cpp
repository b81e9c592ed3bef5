#include "crypto/tunnel.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <deque>
#include <unordered_map>
#include <unordered_set>

#include "crypto/handshake_wire.hpp"
#include "crypto/noise.hpp"
#include "crypto/session.hpp"

namespace meshd::crypto {

namespace {

// Tuning bounds of the manager itself (spec constants are in wire.hpp / handshake_wire.hpp).
constexpr std::size_t kOutboxMax = 65536;        // transmits waiting for poll_transmit; newest dropped
constexpr std::size_t kEventsMax = 65536;        // events waiting for poll_event; newest dropped
constexpr int kIndexAttemptsMax = 64;            // random index draws before giving up
constexpr std::uint64_t kRetryJitterMax_ms = 333;  // WireGuard's handshake retry jitter
constexpr std::uint64_t kRateWindow_ms = 1000;
constexpr unsigned kInitPadShiftMax = 6;         // retries double the init padding up to 64x

bool is_keepalive(ByteSpan plain) {
  if (plain.empty()) return true;
  if (plain.size() != wire::kInnerHeaderLen) return false;
  return (plain[3] & wire::kFlagKeepalive) != 0 && plain[0] == 0 && plain[1] == 0 && plain[2] == 0;
}

// Outside Impl so that their default member initialisers are complete where used.
struct Handshake {
  std::optional<NoiseHandshake> noise;  // nullopt if the last attempt could not be built
  std::uint32_t local_index = 0;
  std::uint64_t started_ms = 0;
  std::uint64_t next_retry_ms = 0;
  std::uint32_t attempts = 0;
};

// Sessions are shared with data-plane workers (DataSessions), so their traffic, and the
// timers that depend on it, is read from each Session's activity figures.
struct Peer {
  NodeId id{};
  PublicKey dh_pub{};
  Mac1Key mac1_key{};  // for packets we send to this peer
  std::vector<Locator> locators;
  std::optional<Locator> endpoint;
  std::shared_ptr<Session> current, previous, next;
  std::optional<CertChain> chain, next_chain;
  std::optional<Handshake> hs;
  std::deque<Bytes> queue;
  // Handshake bytes sent, plus the figures of sessions already released (live sessions
  // count their own transport bytes).
  std::uint64_t rx_bytes = 0, tx_bytes = 0, last_handshake_ms = 0;
  // Passive keepalive (WireGuard's): due keepalive_ms after the first data received
  // since we last sent anything. unanswered_since_ms: when the manager first saw that
  // state (exact for packets it opens; up to kWorkerTimerMax_ms late for workers').
  // keepalive_for_ms: the last_rx_data time a keepalive was due for (sent, or not
  // possible), so a failing seal does not make the deadline spin.
  std::uint64_t unanswered_since_ms = 0;
  std::uint64_t keepalive_for_ms = 0;
  bool reported_up = false;
};

// The sessions of a peer, for loops.
std::array<const std::shared_ptr<Session>*, 3> sessions_of(const Peer& p) {
  return {&p.current, &p.previous, &p.next};
}

// Latest data received on any session of `p` (0 = none), latest packet sent.
std::uint64_t last_rx_data_ms(const Peer& p) {
  std::uint64_t t = 0;
  for (const auto* s : sessions_of(p)) {
    if (*s) t = std::max(t, (*s)->last_rx_data_ms());
  }
  return t;
}

std::uint64_t last_tx_ms(const Peer& p) {
  std::uint64_t t = 0;
  for (const auto* s : sessions_of(p)) {
    if (*s) t = std::max(t, (*s)->last_tx_ms());
  }
  return t;
}

bool has_session(const Peer& p) { return p.current || p.previous || p.next; }

// Drops unknown algorithms and repeats; empty means the process default.
std::vector<AeadAlg> normalized_ciphers(const std::vector<AeadAlg>& in) {
  std::vector<AeadAlg> out;
  for (AeadAlg a : in) {
    if (aead_alg_from_wire(static_cast<std::uint8_t>(a)) &&
        std::find(out.begin(), out.end(), a) == out.end()) {
      out.push_back(a);
    }
  }
  return out.empty() ? default_cipher_preference() : out;
}

}  // namespace

struct TunnelManager::Impl {
  Impl(LocalIdentity s, TunnelConfig c, Random& r)
      : self(std::move(s)),
        cfg(std::move(c)),
        rng(r),
        prologue(noise_prologue(self.root_pub)),
        chain_bytes(self.chain.encode()),
        self_mac1(mac1_key_for(self.dh_key.public_key())) {
    scratch.resize(wire::kMaxDatagram);
    cfg.ciphers = normalized_ciphers(cfg.ciphers);
    cipher_offer = cipher_offer_mask(cfg.ciphers);
    init_payload = encode_init_payload(cipher_offer, chain_bytes);
    resp_len = kRespFixedLen + kRespPayloadOverhead + chain_bytes.size() + kAeadTagLen + kMac1Len;
  }

  LocalIdentity self;
  TunnelConfig cfg;
  Random& rng;
  Bytes prologue;
  Bytes chain_bytes;
  Mac1Key self_mac1;
  std::uint16_t cipher_offer = 0;
  Bytes init_payload;  // the same in every init we send
  std::size_t resp_len = 0;
  std::unordered_map<NodeId, Peer, NodeIdHash> peers;
  std::unordered_map<std::uint32_t, NodeId> index_peer;
  // Refused nodes. Bounded by the caller: the agent refuses from its (bounded) revocation
  // and token-use tables.
  std::unordered_set<NodeId, NodeIdHash> refused;
  std::deque<TunnelTransmit> outbox;
  std::deque<TunnelEvent> events;
  TunnelCounters counters;
  std::uint64_t next_deadline_ms = UINT64_MAX;
  std::uint64_t rate_window_start_ms = 0;
  std::size_t rate_count = 0;
  Bytes scratch;  // handle_datagram decrypts transport packets here (preallocated)
  // Workers: the last snapshot, and whether sessions/endpoints changed since.
  std::shared_ptr<const DataSessions> snapshot;
  std::uint64_t snapshot_version = 0;
  bool snapshot_dirty = true;
  bool workers = false;  // data_sessions() was called: traffic may bypass the manager

  void changed() { snapshot_dirty = true; }

  void set_endpoint(Peer& p, const Locator& to) {
    if (p.endpoint && *p.endpoint == to) return;
    p.endpoint = to;
    changed();
  }

  // ---- small helpers ----

  void emit(TunnelEvent ev) {
    if (events.size() >= kEventsMax) {
      ++counters.drop_outbox_full;
      return;
    }
    events.push_back(std::move(ev));
  }

  // on_session: a transport packet, counted by its Session (note_tx) instead of the peer.
  bool transmit(Peer* p, const Locator& to, Bytes d, bool on_session = false) {
    if (outbox.size() >= kOutboxMax) {
      ++counters.drop_outbox_full;
      return false;
    }
    ++counters.tx_datagrams;
    counters.tx_bytes += d.size();
    if (p != nullptr && !on_session) p->tx_bytes += d.size();
    outbox.push_back(TunnelTransmit{to, std::move(d)});
    return true;
  }

  void emit_rejected(const NodeId& id, std::string reason) {
    emit_rejected(id, std::move(reason), counters.drop_bad_cert);
  }

  void emit_rejected(const NodeId& id, std::string reason, std::uint64_t& counter) {
    ++counter;
    TunnelEvent ev;
    ev.kind = TunnelEvent::Kind::rejected;
    ev.peer = id;
    ev.reason = std::move(reason);
    emit(std::move(ev));
  }

  void emit_down(Peer& p) {
    p.reported_up = false;
    TunnelEvent ev;
    ev.kind = TunnelEvent::Kind::peer_down;
    ev.peer = p.id;
    emit(std::move(ev));
  }

  std::uint32_t alloc_index(const NodeId& id) {
    for (int i = 0; i < kIndexAttemptsMax; ++i) {
      auto idx = static_cast<std::uint32_t>(rng.next_u64());
      if (idx != 0 && index_peer.emplace(idx, id).second) return idx;
    }
    return 0;
  }

  void release(Peer& p, std::shared_ptr<Session>& s) {
    if (!s) return;
    // Workers may still add a few packets to a dropped session; those are not counted.
    p.rx_bytes += s->rx_bytes();
    p.tx_bytes += s->tx_bytes();
    index_peer.erase(s->local_index());
    s.reset();
    changed();
  }

  void drop_handshake(Peer& p) {
    if (p.hs) index_peer.erase(p.hs->local_index);
    p.hs.reset();
  }

  void clear_sessions(Peer& p) {
    release(p, p.current);
    release(p, p.previous);
    release(p, p.next);
    p.next_chain.reset();
    drop_handshake(p);
  }

  bool usable(const Session* s, std::uint64_t now_ms) const {
    return s != nullptr && now_ms - s->created_ms() < cfg.reject_after_time_ms &&
           s->send_counter() < ReplayWindow::kCounterLimit;
  }

  std::uint64_t rekey_at_ms(const Session& s) const {
    // The responder waits a little longer so that, normally, only the initiator rekeys.
    return s.created_ms() + cfg.rekey_after_time_ms + (s.initiator() ? 0 : cfg.rekey_timeout_ms);
  }

  // Data received after the last packet sent (passive keepalive pending).
  static bool unanswered(const Peer& p) {
    std::uint64_t rx = last_rx_data_ms(p);
    return rx > last_tx_ms(p) && rx > p.keepalive_for_ms;
  }

  static void observe_unanswered(Peer& p, std::uint64_t now_ms) {
    if (!unanswered(p)) {
      p.unanswered_since_ms = 0;
    } else if (p.unanswered_since_ms == 0 || p.unanswered_since_ms <= last_tx_ms(p)) {
      p.unanswered_since_ms = now_ms;  // a new episode
    }
  }

  std::uint64_t keepalive_at_ms(const Peer& p) const {
    return (p.unanswered_since_ms != 0 ? p.unanswered_since_ms : last_rx_data_ms(p)) +
           cfg.keepalive_ms;
  }

  bool rekey_due(const Peer& p, std::uint64_t now_ms) const {
    if (!p.current || p.hs) return false;
    return (p.current->carried_data() && now_ms >= rekey_at_ms(*p.current)) ||
           p.current->send_counter() >= cfg.rekey_after_messages;
  }

  std::uint64_t peer_deadline(const Peer& p, std::uint64_t now_ms) const {
    std::uint64_t d = UINT64_MAX;
    if (p.hs) d = std::min({d, p.hs->next_retry_ms, p.hs->started_ms + cfg.rekey_attempt_time_ms});
    for (const auto* s : sessions_of(p)) {
      if (*s) d = std::min(d, (*s)->created_ms() + cfg.reject_after_time_ms);
    }
    if (p.current && !p.hs) {
      if (p.current->send_counter() >= cfg.rekey_after_messages) d = std::min(d, now_ms);
      if (p.current->carried_data()) d = std::min(d, rekey_at_ms(*p.current));
    }
    if (p.current && unanswered(p)) d = std::min(d, keepalive_at_ms(p));
    // Workers move traffic (and so these timers) without telling the manager.
    if (workers && has_session(p)) d = std::min(d, now_ms + kWorkerTimerMax_ms);
    return d;
  }

  void touch(const Peer& p, std::uint64_t now_ms) {
    next_deadline_ms = std::min(next_deadline_ms, peer_deadline(p, now_ms));
  }

  Peer* find(const NodeId& id) {
    auto it = peers.find(id);
    return it == peers.end() ? nullptr : &it->second;
  }

  Peer* find_or_add(const NodeId& id) {
    if (Peer* p = find(id)) return p;
    if (peers.size() >= cfg.peers_max) {
      ++counters.drop_peers_full;
      return nullptr;
    }
    Peer& p = peers[id];
    p.id = id;
    return &p;
  }

  void set_dh(Peer& p, const PublicKey& dh) {
    p.dh_pub = dh;
    p.mac1_key = mac1_key_for(dh);
  }

  // ---- sending ----

  // Seals plaintext on the current session (slot 0) and queues the datagram.
  bool seal_and_send(Peer& p, std::uint64_t now_ms, ByteSpan plain) {
    if (!usable(p.current.get(), now_ms) || !p.endpoint) return false;
    Bytes d(wire::kTransportHeaderLen + plain.size() + wire::kTagLen);
    if (!plain.empty()) std::memcpy(d.data() + wire::kTransportHeaderLen, plain.data(), plain.size());
    std::size_t n = p.current->seal_in_place(kOwnerSlot, d, plain.size());
    if (n == 0) return false;
    Session& s = *p.current;
    if (transmit(&p, *p.endpoint, std::move(d), true)) s.note_tx(now_ms, n, !is_keepalive(plain));
    return true;
  }

  void send_keepalive(Peer& p, std::uint64_t now_ms) {
    const std::uint8_t ka[wire::kInnerHeaderLen] = {0, 0, 0, wire::kFlagKeepalive};
    seal_and_send(p, now_ms, ByteSpan(ka, sizeof ka));
  }

  void flush_queue(Peer& p, std::uint64_t now_ms) {
    while (!p.queue.empty() && usable(p.current.get(), now_ms)) {
      seal_and_send(p, now_ms, p.queue.front());
      p.queue.pop_front();
    }
  }

  std::optional<Locator> handshake_target(const Peer& p, std::uint32_t attempt) const {
    std::vector<Locator> cands;
    if (p.endpoint) cands.push_back(*p.endpoint);
    for (const Locator& l : p.locators) {
      if (std::find(cands.begin(), cands.end(), l) == cands.end()) cands.push_back(l);
    }
    if (cands.empty()) return std::nullopt;
    return cands[attempt % cands.size()];
  }

  // Builds and sends one handshake init (first attempt or a retry).
  void send_init(Peer& p, std::uint64_t now_ms) {
    Handshake& hs = *p.hs;
    index_peer.erase(hs.local_index);
    hs.local_index = alloc_index(p.id);
    std::uint64_t jitter = rng.uniform(std::min(kRetryJitterMax_ms, cfg.rekey_timeout_ms / 4) + 1);
    hs.next_retry_ms = now_ms + cfg.rekey_timeout_ms + jitter;
    hs.noise.reset();
    auto target = handshake_target(p, hs.attempts);
    std::uint32_t attempt = hs.attempts++;
    if (hs.local_index == 0 || !target) return;
    NoiseHandshake noise = NoiseHandshake::initiator(self.dh_key, p.dh_pub, prologue);
    auto msg = noise.create_init(init_payload, rng);
    if (!msg) return;  // low-order peer key: retries fail the same way, then give up
    std::size_t pad_to = std::min(kHandshakeInitPadBase << std::min(attempt, kInitPadShiftMax), kHandshakeMaxLen);
    auto pkt = build_init(hs.local_index, *msg, pad_to, p.mac1_key);
    if (!pkt) return;
    hs.noise = std::move(noise);
    transmit(&p, *target, std::move(pkt).value());
  }

  void start_handshake(Peer& p, std::uint64_t now_ms) {
    if (p.hs) return;
    p.hs.emplace();
    p.hs->started_ms = now_ms;
    send_init(p, now_ms);
  }

  // On a send through the manager: the initiator does not wait for the timer.
  void maybe_rekey(Peer& p, std::uint64_t now_ms) {
    if (p.hs || !p.current) return;
    if (now_ms >= rekey_at_ms(*p.current) || p.current->send_counter() >= cfg.rekey_after_messages) {
      start_handshake(p, now_ms);
    }
  }

  // ---- sessions ----

  void session_established(Peer& p, std::uint64_t now_ms, const CertChain& chain) {
    ++counters.handshakes_completed;
    p.last_handshake_ms = now_ms;
    bool chain_changed = !p.chain || p.chain->encode() != chain.encode();
    p.chain = chain;
    if (!p.reported_up || chain_changed) {
      p.reported_up = true;
      TunnelEvent ev;
      ev.kind = TunnelEvent::Kind::peer_up;
      ev.peer = p.id;
      ev.chain = chain;
      if (p.current) ev.cipher = p.current->alg();
      if (p.endpoint) ev.from = *p.endpoint;
      emit(std::move(ev));
    }
  }

  void install_current(Peer& p, std::shared_ptr<Session> s) {
    release(p, p.previous);
    p.previous = std::move(p.current);
    p.current = std::move(s);
    changed();
  }

  // ---- receiving ----

  bool rate_limited(std::uint64_t now_ms) {
    if (now_ms - rate_window_start_ms >= kRateWindow_ms || now_ms < rate_window_start_ms) {
      rate_window_start_ms = now_ms;
      rate_count = 0;
    }
    if (rate_count >= cfg.handshakes_per_second_max) {
      ++counters.drop_rate_limited;
      return true;
    }
    ++rate_count;
    return false;
  }

  // Checks the peer's chain: verifies against our root, binds the Noise static key, not
  // refused. Emits `rejected` and returns false otherwise.
  std::optional<CertChain> check_chain(std::uint64_t now_ms, ByteSpan payload, const PublicKey& rs) {
    auto chain = CertChain::decode(payload);
    if (!chain) {
      emit_rejected(NodeId{}, chain.error().code);
      return std::nullopt;
    }
    const NodeId& id = chain->node_id();
    auto st = verify_chain(self.root_pub, *chain, now_ms / 1000);
    if (!st) {
      emit_rejected(id, st.error().code);
      return std::nullopt;
    }
    if (chain->node.dh_pub != rs) {
      emit_rejected(id, "cert.key_mismatch");
      return std::nullopt;
    }
    if (refused.count(id) != 0) {
      emit_rejected(id, "node.refused");
      return std::nullopt;
    }
    if (id == self.node_key.public_key()) {
      emit_rejected(id, "node.self");
      return std::nullopt;
    }
    return std::move(chain).value();
  }

  void handle_init(std::uint64_t now_ms, const Locator& from, ByteSpan d) {
    auto init = parse_init(d, self_mac1);
    if (!init) {
      if (init.error().code == "handshake.mac") {
        ++counters.drop_bad_mac;
      } else {
        ++counters.drop_malformed;
      }
      return;
    }
    // No amplification: never answer with more bytes than the init carried. Retries pad
    // more, so a node with a large chain is still reached.
    if (d.size() < resp_len) {
      ++counters.drop_handshake_failed;
      return;
    }
    if (rate_limited(now_ms)) return;
    NoiseHandshake noise = NoiseHandshake::responder(self.dh_key, prologue);
    auto payload = noise.consume_init(init->noise_msg);
    if (!payload) {
      ++counters.drop_handshake_failed;
      return;
    }
    auto params = decode_init_payload(*payload);
    if (!params) {
      emit_rejected(NodeId{}, params.error().code, counters.drop_malformed);
      return;
    }
    auto chain = check_chain(now_ms, params->chain, noise.remote_static());
    if (!chain) return;
    std::optional<AeadAlg> alg = pick_cipher(cfg.ciphers, params->cipher_offer);
    if (!alg) {
      emit_rejected(chain->node_id(), "handshake.no_cipher", counters.drop_no_cipher);
      return;
    }
    Peer* p = find_or_add(chain->node_id());
    if (p == nullptr) return;
    set_dh(*p, noise.remote_static());
    std::uint32_t idx = alloc_index(p->id);
    if (idx == 0) {
      ++counters.drop_handshake_failed;
      return;
    }
    auto resp =
        noise.create_resp(encode_resp_payload(static_cast<std::uint8_t>(*alg), chain_bytes), rng);
    auto keys = resp ? noise.split() : Result<TransportKeys>(make_error("noise.state", "no response"));
    Result<Bytes> pkt = keys ? build_resp(idx, init->sender_index, *resp, p->mac1_key)
                             : Result<Bytes>(keys.error());
    if (!pkt) {
      index_peer.erase(idx);
      ++counters.drop_handshake_failed;
      return;
    }
    // Unconfirmed until the initiator's first transport packet arrives on it: a replayed
    // init can then cost a response but never displaces a working session.
    release(*p, p->next);
    p->next = std::make_shared<Session>(*keys, idx, init->sender_index, now_ms, false, *alg);
    p->next_chain = std::move(chain);
    changed();
    transmit(p, from, std::move(pkt).value());
    touch(*p, now_ms);
  }

  void handle_resp(std::uint64_t now_ms, const Locator& from, ByteSpan d) {
    auto resp = parse_resp(d, self_mac1);
    if (!resp) {
      if (resp.error().code == "handshake.mac") {
        ++counters.drop_bad_mac;
      } else {
        ++counters.drop_malformed;
      }
      return;
    }
    auto it = index_peer.find(resp->receiver_index);
    Peer* p = it == index_peer.end() ? nullptr : find(it->second);
    if (p == nullptr || !p->hs || p->hs->local_index != resp->receiver_index || !p->hs->noise) {
      ++counters.drop_unknown_index;
      return;
    }
    NoiseHandshake& noise = *p->hs->noise;
    auto payload = noise.consume_resp(resp->noise_msg);
    if (!payload) {
      ++counters.drop_handshake_failed;
      return;
    }
    std::optional<CertChain> chain;
    std::optional<AeadAlg> alg;
    auto params = decode_resp_payload(*payload);
    if (!params) {
      emit_rejected(p->id, params.error().code, counters.drop_malformed);
    } else {
      chain = check_chain(now_ms, params->chain, noise.remote_static());
      if (chain && chain->node_id() != p->id) {
        emit_rejected(chain->node_id(), "node.unexpected");
        chain.reset();
      }
      // The choice must be one we offered.
      alg = aead_alg_from_wire(params->cipher);
      if (alg && !pick_cipher(std::span<const AeadAlg>(&*alg, 1), cipher_offer)) alg.reset();
      if (chain && !alg) {
        emit_rejected(p->id, "handshake.no_cipher", counters.drop_no_cipher);
        chain.reset();
      }
    }
    auto keys = noise.split();
    // The exchange is spent either way; retries continue from the timer.
    p->hs->noise.reset();
    if (!chain || !keys || !alg) return;
    std::uint32_t idx = p->hs->local_index;
    p->hs.reset();  // the index now belongs to the session
    install_current(*p,
                    std::make_shared<Session>(*keys, idx, resp->sender_index, now_ms, true, *alg));
    set_endpoint(*p, from);
    session_established(*p, now_ms, *chain);
    bool had_queue = !p->queue.empty();
    flush_queue(*p, now_ms);
    if (!had_queue) send_keepalive(*p, now_ms);  // the responder needs one packet to confirm
    touch(*p, now_ms);
  }

  enum class OpenOutcome { data, keepalive, dropped };

  OpenOutcome open_transport(std::uint64_t now_ms, const Locator& from, std::span<std::uint8_t> d, Peer*& out_peer,
                             std::span<std::uint8_t>& out_plain) {
    auto hdr = parse_transport_header(d);
    if (!hdr) {
      ++counters.drop_malformed;
      return OpenOutcome::dropped;
    }
    auto it = index_peer.find(hdr->receiver_index);
    Peer* p = it == index_peer.end() ? nullptr : find(it->second);
    Session* s = nullptr;
    if (p != nullptr) {
      for (const auto* c : sessions_of(*p)) {
        if (*c && (*c)->local_index() == hdr->receiver_index) s = c->get();
      }
    }
    if (s == nullptr || now_ms - s->created_ms() >= cfg.reject_after_time_ms) {
      ++counters.drop_unknown_index;
      return OpenOutcome::dropped;
    }
    switch (s->open_in_place(d, *hdr, out_plain)) {
      case Session::OpenResult::replay:
        ++counters.drop_replay;
        return OpenOutcome::dropped;
      case Session::OpenResult::decrypt:
        ++counters.drop_decrypt;
        return OpenOutcome::dropped;
      case Session::OpenResult::ok:
        break;
    }
    set_endpoint(*p, from);  // roaming: the last authenticated source wins
    const bool data = !is_keepalive(out_plain);
    s->note_rx(now_ms, d.size(), data);
    if (data) observe_unanswered(*p, now_ms);
    if (s == p->next.get()) {
      install_current(*p, std::move(p->next));
      CertChain chain = std::move(*p->next_chain);
      p->next_chain.reset();
      session_established(*p, now_ms, chain);
      flush_queue(*p, now_ms);
    }
    out_peer = p;
    touch(*p, now_ms);
    return data ? OpenOutcome::data : OpenOutcome::keepalive;
  }

  // ---- timers ----

  void tick(Peer& p, std::uint64_t now_ms) {
    for (auto* s : {&p.current, &p.previous, &p.next}) {
      if (*s && now_ms - (*s)->created_ms() >= cfg.reject_after_time_ms) {
        if (s == &p.next) p.next_chain.reset();
        release(p, *s);
      }
    }
    if (!p.current && p.reported_up) emit_down(p);

    if (p.hs) {
      if (now_ms - p.hs->started_ms >= cfg.rekey_attempt_time_ms) {
        drop_handshake(p);
        counters.drop_handshake_timeout += p.queue.size();
        p.queue.clear();
        if (!p.current) emit_down(p);
      } else if (now_ms >= p.hs->next_retry_ms) {
        send_init(p, now_ms);
      }
    }
    // Checked here and not only on send: workers' traffic never passes send().
    if (rekey_due(p, now_ms)) start_handshake(p, now_ms);
    observe_unanswered(p, now_ms);
    if (p.current && unanswered(p) && now_ms >= keepalive_at_ms(p)) {
      p.keepalive_for_ms = last_rx_data_ms(p);  // once, even if it cannot be sealed
      p.unanswered_since_ms = 0;
      send_keepalive(p, now_ms);
    }
  }
};

// ---- public API ----

TunnelManager::TunnelManager(LocalIdentity self, TunnelConfig cfg, Random& rng)
    : impl_(std::make_unique<Impl>(std::move(self), cfg, rng)) {}

TunnelManager::~TunnelManager() = default;

void TunnelManager::set_peer(const NodeId& id, const PublicKey& dh_pub, std::vector<Locator> locators) {
  Peer* p = impl_->find_or_add(id);
  if (p == nullptr) return;
  impl_->set_dh(*p, dh_pub);
  if (locators.size() > kPeerLocatorsMax) locators.resize(kPeerLocatorsMax);
  p->locators = std::move(locators);
}

void TunnelManager::remove_peer(const NodeId& id) {
  Peer* p = impl_->find(id);
  if (p == nullptr) return;
  impl_->clear_sessions(*p);
  impl_->peers.erase(id);
}

void TunnelManager::refuse(const NodeId& id) {
  impl_->refused.insert(id);
  impl_->changed();
  Peer* p = impl_->find(id);
  if (p == nullptr) return;
  impl_->clear_sessions(*p);
  p->queue.clear();
  if (p->reported_up) impl_->emit_down(*p);
}

bool TunnelManager::send(std::uint64_t now_ms, const NodeId& to, ByteSpan plaintext) {
  Impl& m = *impl_;
  Peer* p = m.find(to);
  if (p == nullptr || m.refused.count(to) != 0) return false;
  if (plaintext.size() > kPlaintextMax) {
    ++m.counters.drop_malformed;
    return false;
  }
  if (m.seal_and_send(*p, now_ms, plaintext)) {
    m.maybe_rekey(*p, now_ms);
    m.touch(*p, now_ms);
    return true;
  }
  if (p->queue.size() >= m.cfg.queued_per_peer_max) {
    ++m.counters.drop_queue_full;
    p->queue.pop_front();
  }
  if (m.cfg.queued_per_peer_max > 0) p->queue.emplace_back(plaintext.begin(), plaintext.end());
  m.start_handshake(*p, now_ms);
  m.touch(*p, now_ms);
  return true;
}

std::size_t TunnelManager::seal_in_place(std::uint64_t now_ms, const NodeId& to, std::span<std::uint8_t> buf,
                                         std::size_t plaintext_len, Locator& out_to) {
  Impl& m = *impl_;
  Peer* p = m.find(to);
  if (p == nullptr || !m.usable(p->current.get(), now_ms) || !p->endpoint) return 0;
  constexpr std::size_t kHdr = wire::kTransportHeaderLen;
  const bool data = buf.size() >= kHdr && buf.size() - kHdr >= plaintext_len &&
                    !is_keepalive(ByteSpan(buf.data() + kHdr, plaintext_len));
  std::size_t n = p->current->seal_in_place(kOwnerSlot, buf, plaintext_len);
  if (n == 0) return 0;
  out_to = *p->endpoint;
  ++m.counters.tx_datagrams;
  m.counters.tx_bytes += n;
  p->current->note_tx(now_ms, n, data);
  m.maybe_rekey(*p, now_ms);
  m.touch(*p, now_ms);
  return n;
}

void TunnelManager::handle_datagram(std::uint64_t now_ms, const Locator& from, ByteSpan d) {
  Impl& m = *impl_;
  ++m.counters.rx_datagrams;
  m.counters.rx_bytes += d.size();
  if (d.size() < 4 || d.size() > wire::kMaxDatagram || d[1] != 0 || d[2] != 0 || d[3] != 0) {
    ++m.counters.drop_malformed;
    return;
  }
  switch (static_cast<wire::PacketType>(d[0])) {
    case wire::PacketType::handshake_init:
      m.handle_init(now_ms, from, d);
      return;
    case wire::PacketType::handshake_resp:
      m.handle_resp(now_ms, from, d);
      return;
    case wire::PacketType::transport: {
      std::span<std::uint8_t> buf(m.scratch.data(), d.size());
      std::memcpy(buf.data(), d.data(), d.size());
      Peer* p = nullptr;
      std::span<std::uint8_t> plain;
      if (m.open_transport(now_ms, from, buf, p, plain) == Impl::OpenOutcome::data) {
        TunnelEvent ev;
        ev.kind = TunnelEvent::Kind::received;
        ev.peer = p->id;
        ev.from = from;
        ev.plaintext.assign(plain.begin(), plain.end());
        m.emit(std::move(ev));
      }
      return;
    }
    default:  // cookie_reply is reserved and unused for now
      ++m.counters.drop_malformed;
      return;
  }
}

bool TunnelManager::open_in_place(std::uint64_t now_ms, const Locator& from, std::span<std::uint8_t> datagram,
                                  NodeId& out_peer, std::span<std::uint8_t>& out_plain) {
  Impl& m = *impl_;
  if (datagram.empty() || datagram[0] != static_cast<std::uint8_t>(wire::PacketType::transport)) return false;
  ++m.counters.rx_datagrams;
  m.counters.rx_bytes += datagram.size();
  Peer* p = nullptr;
  std::span<std::uint8_t> plain;
  switch (m.open_transport(now_ms, from, datagram, p, plain)) {
    case Impl::OpenOutcome::dropped:
      return false;
    case Impl::OpenOutcome::keepalive:
      out_peer = p->id;
      out_plain = {};
      return true;
    case Impl::OpenOutcome::data:
      out_peer = p->id;
      out_plain = plain;
      return true;
  }
  return false;
}

void TunnelManager::handle_timeout(std::uint64_t now_ms) {
  Impl& m = *impl_;
  m.next_deadline_ms = UINT64_MAX;
  for (auto& [id, p] : m.peers) {
    m.tick(p, now_ms);
    m.next_deadline_ms = std::min(m.next_deadline_ms, m.peer_deadline(p, now_ms));
  }
}

std::optional<TunnelTransmit> TunnelManager::poll_transmit() {
  if (impl_->outbox.empty()) return std::nullopt;
  TunnelTransmit t = std::move(impl_->outbox.front());
  impl_->outbox.pop_front();
  return t;
}

std::optional<TunnelEvent> TunnelManager::poll_event() {
  if (impl_->events.empty()) return std::nullopt;
  TunnelEvent e = std::move(impl_->events.front());
  impl_->events.pop_front();
  return e;
}

std::uint64_t TunnelManager::poll_timeout() const { return impl_->next_deadline_ms; }

const TunnelCounters& TunnelManager::counters() const { return impl_->counters; }

std::vector<PeerStats> TunnelManager::peer_stats() const {
  std::vector<PeerStats> out;
  out.reserve(impl_->peers.size());
  for (const auto& [id, p] : impl_->peers) {
    PeerStats s;
    s.id = id;
    s.session_up = p.current != nullptr;
    s.handshaking = p.hs.has_value();
    s.endpoint = p.endpoint;
    s.rx_bytes = p.rx_bytes;
    s.tx_bytes = p.tx_bytes;
    for (const auto* ss : sessions_of(p)) {
      if (*ss) {
        s.rx_bytes += (*ss)->rx_bytes();
        s.tx_bytes += (*ss)->tx_bytes();
      }
    }
    if (p.current) s.cipher = p.current->alg();
    s.last_handshake_ms = p.last_handshake_ms;
    out.push_back(s);
  }
  return out;
}

std::shared_ptr<const DataSessions> TunnelManager::data_sessions() {
  Impl& m = *impl_;
  if (!m.workers) {
    // From now on traffic may bypass the manager: have the timers recomputed at once,
    // with the kWorkerTimerMax_ms bound.
    m.workers = true;
    m.next_deadline_ms = 0;
  }
  if (m.snapshot && !m.snapshot_dirty) return m.snapshot;
  auto ds = std::make_shared<DataSessions>();
  ds->version = ++m.snapshot_version;
  for (const auto& [id, p] : m.peers) {
    // Refused nodes have no sessions (refuse() clears them).
    if (p.current && p.endpoint) {
      ds->send.emplace(id, DataSendEntry{p.current, *p.endpoint,
                                         p.current->created_ms() + m.cfg.reject_after_time_ms});
    }
    for (const auto* s : sessions_of(p)) {
      if (!*s) continue;
      DataRecvEntry e;
      e.session = *s;
      e.peer = id;
      e.endpoint = p.endpoint;
      e.confirmed = s != &p.next;
      e.expires_ms = (*s)->created_ms() + m.cfg.reject_after_time_ms;
      ds->recv.emplace((*s)->local_index(), std::move(e));
    }
  }
  m.snapshot = std::move(ds);
  m.snapshot_dirty = false;
  return m.snapshot;
}

std::optional<CertChain> TunnelManager::peer_chain(const NodeId& id) const {
  auto it = impl_->peers.find(id);
  if (it == impl_->peers.end()) return std::nullopt;
  return it->second.chain;
}

}  // namespace meshd::crypto
