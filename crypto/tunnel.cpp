#include "crypto/tunnel.hpp"

#include <sodium.h>

#include <algorithm>
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

struct Peer {
  NodeId id{};
  PublicKey dh_pub{};
  Mac1Key mac1_key{};  // for packets we send to this peer
  std::vector<Locator> locators;
  std::optional<Locator> endpoint;
  std::unique_ptr<Session> current, previous, next;
  std::optional<CertChain> chain, next_chain;
  std::optional<Handshake> hs;
  std::deque<Bytes> queue;
  std::uint64_t rx_bytes = 0, tx_bytes = 0, last_handshake_ms = 0;
  std::uint64_t last_recv_data_ms = 0;
  bool unanswered = false;         // data received, nothing sent since (passive keepalive)
  bool data_since_session = false;  // the current session carried data (worth rekeying)
  bool reported_up = false;
};

}  // namespace

struct TunnelManager::Impl {
  Impl(LocalIdentity s, TunnelConfig c, Random& r)
      : self(std::move(s)), cfg(c), rng(r), prologue(noise_prologue(self.root_pub)),
        chain_bytes(self.chain.encode()), self_mac1(mac1_key_for(self.dh_key.public_key())) {
    scratch.resize(wire::kMaxDatagram);
    resp_len = kRespFixedLen + chain_bytes.size() + kAeadTagLen + kMac1Len;
  }

  LocalIdentity self;
  TunnelConfig cfg;
  Random& rng;
  Bytes prologue;
  Bytes chain_bytes;
  Mac1Key self_mac1;
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

  // ---- small helpers ----

  void emit(TunnelEvent ev) {
    if (events.size() >= kEventsMax) {
      ++counters.drop_outbox_full;
      return;
    }
    events.push_back(std::move(ev));
  }

  void transmit(Peer* p, const Locator& to, Bytes d) {
    if (outbox.size() >= kOutboxMax) {
      ++counters.drop_outbox_full;
      return;
    }
    ++counters.tx_datagrams;
    counters.tx_bytes += d.size();
    if (p != nullptr) p->tx_bytes += d.size();
    outbox.push_back(TunnelTransmit{to, std::move(d)});
  }

  void emit_rejected(const NodeId& id, std::string reason) {
    ++counters.drop_bad_cert;
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

  void release(std::unique_ptr<Session>& s) {
    if (s) index_peer.erase(s->local_index());
    s.reset();
  }

  void drop_handshake(Peer& p) {
    if (p.hs) index_peer.erase(p.hs->local_index);
    p.hs.reset();
  }

  void clear_sessions(Peer& p) {
    release(p.current);
    release(p.previous);
    release(p.next);
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

  std::uint64_t peer_deadline(const Peer& p) const {
    std::uint64_t d = UINT64_MAX;
    if (p.hs) d = std::min({d, p.hs->next_retry_ms, p.hs->started_ms + cfg.rekey_attempt_time_ms});
    for (const auto* s : {p.current.get(), p.previous.get(), p.next.get()}) {
      if (s != nullptr) d = std::min(d, s->created_ms() + cfg.reject_after_time_ms);
    }
    if (p.current && !p.hs && p.data_since_session) d = std::min(d, rekey_at_ms(*p.current));
    if (p.current && p.unanswered) d = std::min(d, p.last_recv_data_ms + cfg.keepalive_ms);
    return d;
  }

  void touch(const Peer& p) { next_deadline_ms = std::min(next_deadline_ms, peer_deadline(p)); }

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

  // Seals plaintext on the current session and queues the datagram.
  bool seal_and_send(Peer& p, std::uint64_t now_ms, ByteSpan plain) {
    if (!usable(p.current.get(), now_ms) || !p.endpoint) return false;
    Bytes d(wire::kTransportHeaderLen + plain.size() + wire::kTagLen);
    if (!plain.empty()) std::memcpy(d.data() + wire::kTransportHeaderLen, plain.data(), plain.size());
    std::size_t n = p.current->seal_in_place(d, plain.size());
    if (n == 0) return false;
    p.unanswered = false;
    transmit(&p, *p.endpoint, std::move(d));
    return true;
  }

  void send_keepalive(Peer& p, std::uint64_t now_ms) {
    const std::uint8_t ka[wire::kInnerHeaderLen] = {0, 0, 0, wire::kFlagKeepalive};
    seal_and_send(p, now_ms, ByteSpan(ka, sizeof ka));
  }

  void flush_queue(Peer& p, std::uint64_t now_ms) {
    bool sent_any = false;
    while (!p.queue.empty() && usable(p.current.get(), now_ms)) {
      sent_any |= seal_and_send(p, now_ms, p.queue.front());
      p.queue.pop_front();
    }
    if (sent_any) p.data_since_session = true;
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
    auto msg = noise.create_init(chain_bytes, rng);
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
    p.data_since_session = false;
    bool chain_changed = !p.chain || p.chain->encode() != chain.encode();
    p.chain = chain;
    if (!p.reported_up || chain_changed) {
      p.reported_up = true;
      TunnelEvent ev;
      ev.kind = TunnelEvent::Kind::peer_up;
      ev.peer = p.id;
      ev.chain = chain;
      if (p.endpoint) ev.from = *p.endpoint;
      emit(std::move(ev));
    }
  }

  void install_current(Peer& p, std::unique_ptr<Session> s) {
    release(p.previous);
    p.previous = std::move(p.current);
    p.current = std::move(s);
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
    auto chain = check_chain(now_ms, *payload, noise.remote_static());
    if (!chain) return;
    Peer* p = find_or_add(chain->node_id());
    if (p == nullptr) return;
    set_dh(*p, noise.remote_static());
    std::uint32_t idx = alloc_index(p->id);
    if (idx == 0) {
      ++counters.drop_handshake_failed;
      return;
    }
    auto resp = noise.create_resp(chain_bytes, rng);
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
    release(p->next);
    p->next = std::make_unique<Session>(*keys, idx, init->sender_index, now_ms, false);
    p->next_chain = std::move(chain);
    transmit(p, from, std::move(pkt).value());
    touch(*p);
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
    auto chain = check_chain(now_ms, *payload, noise.remote_static());
    if (chain && chain->node_id() != p->id) {
      emit_rejected(chain->node_id(), "node.unexpected");
      chain.reset();
    }
    auto keys = noise.split();
    // The exchange is spent either way; retries continue from the timer.
    p->hs->noise.reset();
    if (!chain || !keys) return;
    std::uint32_t idx = p->hs->local_index;
    p->hs.reset();  // the index now belongs to the session
    install_current(*p, std::make_unique<Session>(*keys, idx, resp->sender_index, now_ms, true));
    p->endpoint = from;
    session_established(*p, now_ms, *chain);
    bool had_queue = !p->queue.empty();
    flush_queue(*p, now_ms);
    if (!had_queue) send_keepalive(*p, now_ms);  // the responder needs one packet to confirm
    touch(*p);
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
      for (Session* c : {p->current.get(), p->previous.get(), p->next.get()}) {
        if (c != nullptr && c->local_index() == hdr->receiver_index) s = c;
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
    p->endpoint = from;  // roaming: the last authenticated source wins
    p->rx_bytes += d.size();
    if (s == p->next.get()) {
      install_current(*p, std::move(p->next));
      CertChain chain = std::move(*p->next_chain);
      p->next_chain.reset();
      session_established(*p, now_ms, chain);
      flush_queue(*p, now_ms);
    }
    out_peer = p;
    OpenOutcome out = OpenOutcome::keepalive;
    if (!is_keepalive(out_plain)) {
      p->unanswered = true;
      p->last_recv_data_ms = now_ms;
      p->data_since_session = true;
      out = OpenOutcome::data;
    }
    touch(*p);
    return out;
  }

  // ---- timers ----

  void tick(Peer& p, std::uint64_t now_ms) {
    for (auto* s : {&p.current, &p.previous, &p.next}) {
      if (*s && now_ms - (*s)->created_ms() >= cfg.reject_after_time_ms) {
        if (s == &p.next) p.next_chain.reset();
        release(*s);
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
    if (p.current && !p.hs && p.data_since_session && now_ms >= rekey_at_ms(*p.current)) {
      start_handshake(p, now_ms);
    }
    if (p.unanswered && (!p.current || now_ms >= p.last_recv_data_ms + cfg.keepalive_ms)) {
      if (p.current) send_keepalive(p, now_ms);
      p.unanswered = false;
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
  Peer* p = impl_->find(id);
  if (p == nullptr) return;
  impl_->clear_sessions(*p);
  p->queue.clear();
  p->unanswered = false;
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
    p->data_since_session = true;
    m.maybe_rekey(*p, now_ms);
    m.touch(*p);
    return true;
  }
  if (p->queue.size() >= m.cfg.queued_per_peer_max) {
    ++m.counters.drop_queue_full;
    p->queue.pop_front();
  }
  if (m.cfg.queued_per_peer_max > 0) p->queue.emplace_back(plaintext.begin(), plaintext.end());
  m.start_handshake(*p, now_ms);
  m.touch(*p);
  return true;
}

std::size_t TunnelManager::seal_in_place(std::uint64_t now_ms, const NodeId& to, std::span<std::uint8_t> buf,
                                         std::size_t plaintext_len, Locator& out_to) {
  Impl& m = *impl_;
  Peer* p = m.find(to);
  if (p == nullptr || !m.usable(p->current.get(), now_ms) || !p->endpoint) return 0;
  std::size_t n = p->current->seal_in_place(buf, plaintext_len);
  if (n == 0) return 0;
  out_to = *p->endpoint;
  ++m.counters.tx_datagrams;
  m.counters.tx_bytes += n;
  p->tx_bytes += n;
  p->unanswered = false;
  p->data_since_session = true;
  m.maybe_rekey(*p, now_ms);
  m.touch(*p);
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
    m.next_deadline_ms = std::min(m.next_deadline_ms, m.peer_deadline(p));
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
    s.last_handshake_ms = p.last_handshake_ms;
    out.push_back(s);
  }
  return out;
}

std::optional<CertChain> TunnelManager::peer_chain(const NodeId& id) const {
  auto it = impl_->peers.find(id);
  if (it == impl_->peers.end()) return std::nullopt;
  return it->second.chain;
}

}  // namespace meshd::crypto
