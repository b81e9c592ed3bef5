// TunnelManager: every encrypted session this node has, sans-I/O.
//
// Owns the Noise IK handshakes (crypto/noise.hpp), transport sessions with 64-bit
// counters and replay windows (crypto/session.hpp), WireGuard-style timers (rekey,
// reject, handshake retry, keepalive) and the receiver-index table. It never touches
// sockets or clocks: the agent passes datagrams and `now_ms` in and takes datagrams,
// events and the next deadline out (quinn-proto style).
//
// Trust: a handshake succeeds only if the peer's certificate chain verifies against
// the mesh root (crypto/cert.hpp), its NodeCert dh_pub equals the Noise static key,
// the node is not refused (revoked, over-used token: see refuse()) and the two sides
// share a transport AEAD (crypto/cipher_suite.hpp).
//
// Data-plane workers. The manager is single-threaded (its owner's thread uses cipher
// slot 0). Worker threads seal and open transport packets themselves on the Sessions of
// an immutable snapshot, data_sessions(), that the owner republishes after its inputs:
//   send: entry = send[peer]; if now < entry.expires_ms, entry.session->seal_in_place(
//         slot, ...) and note_tx(); else (or if it returns 0) hand the frame to the owner,
//         which calls send() (queues, handshakes).
//   recv: entry = recv[receiver_index]; if entry.confirmed && entry.endpoint == from and
//         now < entry.expires_ms: decrypt_in_place(slot, ...), accept_counters() once
//         per batch, note_rx(); anything else (unknown index, other source = roaming,
//         unconfirmed session = promotion, handshakes) goes to the owner, which calls
//         open_in_place() / handle_datagram() as without workers.
// Timers then see that traffic only through the Sessions' activity figures, so once
// data_sessions() has been called the owner must run handle_timeout() at least every
// kWorkerTimerMax_ms while any session exists; poll_timeout() says so by itself (see
// there), so an owner that re-arms its timer from poll_timeout() needs nothing more.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/aead.hpp"
#include "crypto/cert.hpp"
#include "crypto/cipher_suite.hpp"
#include "crypto/keys.hpp"
#include "crypto/random.hpp"
#include "crypto/session.hpp"
#include "crypto/wire.hpp"

namespace meshd::crypto {

struct LocalIdentity {
  SigningKey node_key;
  DhKey dh_key;
  CertChain chain;
  PublicKey root_pub{};
};

// Largest plaintext send() accepts: a transport datagram must fit wire::kMaxDatagram.
inline constexpr std::size_t kPlaintextMax =
    wire::kMaxDatagram - wire::kTransportHeaderLen - wire::kTagLen;
inline constexpr std::size_t kPeerLocatorsMax = 16;  // set_peer keeps the first ones
// With data-plane workers, the longest the owner may wait between handle_timeout() calls
// (keepalive and rekey timers are then up to this late).
inline constexpr std::uint64_t kWorkerTimerMax_ms = 1000;

struct TunnelConfig {
  // WireGuard's timer values (spec-like, but tunable here for tests).
  std::uint64_t rekey_after_time_ms = 120'000;
  std::uint64_t reject_after_time_ms = 180'000;
  std::uint64_t rekey_timeout_ms = 5'000;        // handshake retry interval
  std::uint64_t rekey_attempt_time_ms = 90'000;  // give up handshaking after this
  std::uint64_t keepalive_ms = 10'000;           // passive keepalive after receive
  std::uint64_t rekey_after_messages = 1ull << 60;
  std::size_t peers_max = 16384;
  std::size_t queued_per_peer_max = 64;  // packets held while handshaking; oldest dropped
  std::size_t handshakes_per_second_max = 1000;  // beyond it, handshake inits dropped (counted)
  // Transport AEADs this node accepts, most preferred first (crypto/cipher_suite.hpp).
  // As initiator it offers all of them; as responder it picks the first one the
  // initiator offered. Unknown values and repeats are ignored; empty means the default.
  std::vector<AeadAlg> ciphers = default_cipher_preference();
};

struct TunnelCounters {
  std::uint64_t rx_datagrams = 0, tx_datagrams = 0;
  std::uint64_t rx_bytes = 0, tx_bytes = 0;
  std::uint64_t handshakes_completed = 0;
  std::uint64_t drop_malformed = 0;       // too short, unknown type, bad lengths
  std::uint64_t drop_bad_mac = 0;         // handshake mac1 wrong (garbage, wrong key)
  std::uint64_t drop_handshake_failed = 0;  // Noise/AEAD failure inside a handshake
  std::uint64_t drop_bad_cert = 0;        // chain did not verify / refused node
  std::uint64_t drop_unknown_index = 0;   // transport for no session
  std::uint64_t drop_decrypt = 0;         // AEAD tag failure on transport
  std::uint64_t drop_replay = 0;          // counter replayed or too old
  std::uint64_t drop_rate_limited = 0;
  std::uint64_t drop_queue_full = 0;
  // Added with the implementation:
  std::uint64_t drop_peers_full = 0;        // new peer beyond peers_max (set_peer or inbound)
  std::uint64_t drop_outbox_full = 0;       // transmit/event queue full (agent not polling)
  std::uint64_t drop_handshake_timeout = 0;  // queued packets dropped when a handshake gave up
  std::uint64_t drop_no_cipher = 0;          // handshake refused: no transport AEAD in common
  // Traffic that data-plane workers seal and open themselves is not in these counters
  // (it is in the Sessions' figures and in peer_stats()).
};

struct PeerStats {
  NodeId id{};
  bool session_up = false;
  bool handshaking = false;
  std::optional<Locator> endpoint;  // current underlay address (roams to last authentic source)
  // Transport datagram bytes on all sessions (also those sealed/opened by workers and
  // noted on the Session) plus handshake bytes sent.
  std::uint64_t rx_bytes = 0, tx_bytes = 0;
  std::uint64_t last_handshake_ms = 0;  // 0 = never
  AeadAlg cipher = AeadAlg::chacha20_poly1305;  // the current session's (if session_up)
};

struct TunnelTransmit {
  Locator to;
  Bytes datagram;
};

struct TunnelEvent {
  enum class Kind {
    peer_up,     // first session after being down, or the peer's chain changed on a rekey;
                 // chain = verified peer chain (plain rekeys do not repeat it)
    peer_down,   // all sessions expired or handshakes gave up
    received,    // authenticated plaintext (vni | flags | payload) from `peer`
    rejected,    // handshake from `peer` refused; `reason` says why (e.g. "cert.expired")
  };
  Kind kind{};
  NodeId peer{};
  std::optional<CertChain> chain;               // peer_up
  AeadAlg cipher = AeadAlg::chacha20_poly1305;  // peer_up: the new session's
  Locator from;                                 // received / peer_up
  Bytes plaintext;                              // received: inner header + payload
  std::string reason;                           // rejected
};

// Snapshot entries for data-plane workers (see the top of this file). The shared_ptr
// keeps a Session alive while a worker uses it, even after the manager dropped it.
struct DataSendEntry {
  std::shared_ptr<Session> session;  // the peer's current session
  Locator endpoint;                  // where to send
  std::uint64_t expires_ms = 0;      // created + reject_after_time: not usable from then on
};
struct DataRecvEntry {
  std::shared_ptr<Session> session;
  NodeId peer{};
  std::optional<Locator> endpoint;  // the peer's current endpoint
  // False for a responder's `next` session: the first packet on it must go through
  // TunnelManager::open_in_place (it promotes the session to current).
  bool confirmed = true;
  std::uint64_t expires_ms = 0;  // created + reject_after_time
};
struct DataSessions {
  // Peers with a current session and an endpoint.
  std::unordered_map<NodeId, DataSendEntry, NodeIdHash> send;
  // Local index -> session (current, previous, next).
  std::unordered_map<std::uint32_t, DataRecvEntry> recv;
  std::uint64_t version = 0;  // grows with each rebuild
};

class TunnelManager {
 public:
  TunnelManager(LocalIdentity self, TunnelConfig cfg, Random& rng);
  ~TunnelManager();
  TunnelManager(const TunnelManager&) = delete;
  TunnelManager& operator=(const TunnelManager&) = delete;

  // Tells the manager how to reach a node (static key + candidate locators, tried in
  // order). Needed before send() to a node that has not contacted us.
  void set_peer(const NodeId& id, const PublicKey& dh_pub, std::vector<Locator> locators);
  void remove_peer(const NodeId& id);
  // Refused nodes: sessions torn down, handshakes from them rejected from now on.
  void refuse(const NodeId& id);

  // Sends `plaintext` (inner header + payload) to `to`. With a live session it is
  // sealed at once; otherwise it is queued (bounded) and a handshake starts.
  // Returns false if the peer is unknown (no set_peer and no inbound session).
  bool send(std::uint64_t now_ms, const NodeId& to, ByteSpan plaintext);

  // Fast path: `buf` holds plaintext at buf[kTransportHeaderLen .. +plaintext_len) and
  // has room for the tag after it. Seals in place, writes the header. Returns the
  // datagram length and the destination, or 0 if there is no usable session (then
  // call send(), which queues and handshakes).
  std::size_t seal_in_place(std::uint64_t now_ms, const NodeId& to, std::span<std::uint8_t> buf,
                            std::size_t plaintext_len, Locator& out_to);

  // One datagram from the underlay. Never throws; bad input is dropped and counted.
  void handle_datagram(std::uint64_t now_ms, const Locator& from, ByteSpan datagram);

  // Fast path for transport packets: decrypts in place. On success returns true and
  // sets `out_peer` and `out_plain` (a view into `datagram`). Non-transport packets
  // and failures return false (handshakes are then passed to handle_datagram by the
  // caller; failures are already counted). A keepalive is consumed here: true with an
  // empty `out_plain` (nothing to deliver).
  bool open_in_place(std::uint64_t now_ms, const Locator& from, std::span<std::uint8_t> datagram,
                     NodeId& out_peer, std::span<std::uint8_t>& out_plain);

  void handle_timeout(std::uint64_t now_ms);

  std::optional<TunnelTransmit> poll_transmit();
  std::optional<TunnelEvent> poll_event();
  // Next time handle_timeout wants to run; UINT64_MAX if none. Once data_sessions() has
  // been called: 0 right after that first call, then at most kWorkerTimerMax_ms after
  // the last input or handle_timeout while any session exists.
  std::uint64_t poll_timeout() const;

  // Immutable snapshot for data-plane workers. Rebuilt only when sessions, endpoints or
  // refusals changed since the last call (else the same pointer is returned); the owner
  // calls it after each input (or batch of inputs) and publishes it to the workers.
  // Entries are not filtered by time: workers check expires_ms. Cost of a rebuild:
  // O(peers).
  std::shared_ptr<const DataSessions> data_sessions();

  const TunnelCounters& counters() const;
  std::vector<PeerStats> peer_stats() const;
  std::optional<CertChain> peer_chain(const NodeId& id) const;  // from the last handshake

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshd::crypto
