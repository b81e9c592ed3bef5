// The running agent: the sans-I/O cores (TunnelManager, MeshCore, Forwarder) wired to
// libuv, the UDP socket, the per-VNI TAPs, the control socket and the store.
//
// Split by concern: daemon.cpp (start, stop, join, leave, timers, signals),
// tunnel_wiring.cpp (UDP in/out, tunnel events), mesh_wiring.cpp (mesh messages and
// events, peers, FIB), data_path.cpp (TAP frames), control_handlers.cpp (requests),
// route_handlers.cpp (routed prefixes), metrics.cpp (counters).
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/clock.hpp"
#include "agent/dp_worker.hpp"
#include "agent/control.hpp"
#include "agent/os_random.hpp"
#include "agent/store.hpp"
#include "agent/udp_socket.hpp"
#include "crypto/token.hpp"
#include "crypto/tunnel.hpp"
#include "dataplane/forwarder.hpp"
#include "dataplane/vni_devices.hpp"
#include "agent/pending_frames.hpp"
#include "mesh/mesh_core.hpp"

namespace meshd::agent {

inline constexpr std::uint64_t kJoinTimeout_ms = 30'000;
inline constexpr std::uint64_t kLeaveDrain_ms = 1'000;
inline constexpr std::size_t kPumpRoundsMax = 32;    // event/transmit drain rounds per input
inline constexpr std::uint64_t kTouchPeriod_ms = 10'000;
// A data buffer: transport header headroom, inner header, frame, tag.
inline constexpr std::size_t kFrameMax = 65535;
inline constexpr std::size_t kPacketBufLen =
    wire::kTransportHeaderLen + wire::kInnerHeaderLen + kFrameMax + wire::kTagLen;

struct DaemonOptions {
  std::string state_dir;
  // Join mode: the enrollment not yet persisted and the token that admits it.
  std::optional<StoredIdentity> joining_identity;
  std::optional<crypto::Token> token;
  // --set NAME=VALUE (mesh_settings.hpp), applied over the stored ones and then stored.
  std::vector<std::string> mesh_settings;
};

struct AgentCounters {
  std::uint64_t tap_tx_frames = 0, tap_write_errors = 0;  // control thread's writes
  std::uint64_t drop_inner_header = 0;    // plaintext shorter than the inner header
  std::uint64_t drop_no_chain = 0;        // data/control from a peer without a verified chain
  std::uint64_t drop_no_session = 0;      // tunnel refused a frame (unknown peer)
  std::uint64_t mesh_tx_no_peer = 0;      // mesh message to a node we cannot reach
  // Mapping system (issue 4):
  std::uint64_t map_lookups = 0;          // misses that asked the mapping system
  std::uint64_t map_lookup_floods = 0;    // sent frames flooded: key unresolvable (negative)
  std::uint64_t rx_src_unresolved = 0;    // received frames dropped: sender's MAC unresolvable
};

class Daemon {
 public:
  // Runs in the foreground until stopped; returns the process exit code.
  static int run(DaemonOptions opt);

  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

 private:
  explicit Daemon(DaemonOptions opt);
  int start();  // 0 = running; otherwise an exit code (message already printed)
  int load_mesh_settings();  // into mesh_cfg_; 0 or an exit code (message printed)
  void stop(int exit_code);

  // daemon.cpp
  void arm_timer(uv_timer_t* t, std::uint64_t deadline_ms, std::uint64_t now_ms);
  void rearm_timers(std::uint64_t now_ms);
  void on_join_accepted();
  void on_join_refused(const std::string& reason);
  void on_join_timeout();
  void begin_leave(ControlServer::Respond respond);
  void finish_leave();
  std::uint64_t now_ms() const { return clock_.now_ms(); }

  // tunnel_wiring.cpp
  // Work the data-plane workers handed over (handshakes, gossip, misses, floods).
  void on_slow_items();
  void on_datagram(std::uint64_t now_ms, const Locator& from, std::span<std::uint8_t> datagram);
  void on_plaintext(std::uint64_t now_ms, const crypto::NodeId& peer, std::span<std::uint8_t> plain);
  void flush_tunnel_transmits();
  bool drain_tunnel_events(std::uint64_t now_ms);
  const crypto::CertChain* chain_for(const crypto::NodeId& peer);
  // Inputs done: drain both cores until quiet, publish the FIB if it changed, re-arm.
  void pump(std::uint64_t now_ms);
  // Gives the workers a new view if the FIB, sessions, chains or TAPs changed.
  void publish_view();
  // dp_setup.cpp: the workers' sockets and threads (start), their options.
  int start_dataplane();

  // mesh_wiring.cpp
  bool drain_mesh(std::uint64_t now_ms);
  void on_mesh_event(std::uint64_t now_ms, mesh::MeshEvent& ev);
  void ensure_peer(const crypto::NodeId& id);
  void set_tunnel_peer(const crypto::NodeId& id, const crypto::PublicKey& dh_pub,
                       const std::vector<Locator>& locators);
  void remember_contact(const mesh::MemberInfo& m, bool alive);
  void rebuild_fib();
  std::vector<mesh::Contact> restored_contacts() const;

  // data_path.cpp
  void watch_tap(std::uint32_t vni);
  void unwatch_tap(std::uint32_t vni);
  // The frame at tap_buf_[kFrameOffset], `len` bytes, read from the TAP of `vni`.
  // may_wait: a miss may wait for the mapping system (false for replays).
  void forward_tap_frame(std::uint64_t now_ms, std::uint32_t vni, std::size_t len, bool may_wait);
  void flood_frame(std::uint64_t now_ms, std::uint32_t vni, ByteSpan frame);
  // A received frame (from `sender`, verified chain) for `vni`; may wait for its
  // source MAC's mapping (may_wait).
  void deliver_tunnel_frame(std::uint64_t now_ms, const crypto::NodeId& sender,
                            const crypto::CertChain& chain, std::uint32_t vni, ByteSpan frame,
                            bool may_wait);
  // Asks the mapping system for `key` and queues the frame until the answer; false if
  // it cannot wait (negative answer cached, queues full): the caller floods or drops.
  bool wait_for_mapping(std::uint64_t now_ms, const mesh::LookupKey& key, const PendingFrame& meta,
                        ByteSpan frame);
  // Frames waiting for keys the mapping system answered (after the FIB is rebuilt).
  void replay_pending(std::uint64_t now_ms);
  // Every kTouchPeriod_ms: cached mappings that carried traffic are marked in use, so
  // the mesh refreshes them before their TTL runs out (mesh::MeshCore::touch).
  void touch_used(std::uint64_t now_ms);
  // Seals `len` frame bytes at buf[kTransportHeaderLen + kInnerHeaderLen] for `to`.
  void send_frame(std::uint64_t now_ms, const crypto::NodeId& to, std::uint32_t vni,
                  std::span<std::uint8_t> buf, std::size_t len);

  // control_handlers.cpp
  void on_control(const ControlRequest& req, ControlServer::Respond respond);
  nlohmann::json handle_attach(const ControlRequest& req);
  nlohmann::json handle_detach(const ControlRequest& req);
  nlohmann::json handle_revoke(const ControlRequest& req);
  nlohmann::json status_json() const;
  nlohmann::json peers_json() const;
  nlohmann::json endpoints_json() const;
  void reattach_stored();
  Status attach_one(dp::Attachment a, bool restoring, dp::Attachment* out);

  // route_handlers.cpp
  nlohmann::json handle_route_add(const ControlRequest& req);
  nlohmann::json handle_route_del(const ControlRequest& req);
  nlohmann::json routes_json() const;
  // Start, after reattach_stored: announce the stored routes whose next hop endpoint
  // was restored (start() already put them in the first record); forget those whose
  // endpoint is gone for good.
  void restore_routes();
  // Detach of endpoint `a`: withdraws and forgets the routes through it; returns them.
  std::vector<mesh::RouteAnnouncement> drop_routes_via(const dp::Attachment& a);

  // metrics.cpp
  nlohmann::json counters_json() const;

  DaemonOptions opt_;
  uv_loop_t loop_{};
  bool loop_ready_ = false;
  Clock clock_;
  OsRandom rng_;
  std::unique_ptr<Store> store_;
  int lock_fd_ = -1;  // flock on DIR/agent.lock, held for the agent's life
  StoredIdentity id_;
  Locator listen_;
  std::vector<Locator> locators_;
  std::unique_ptr<crypto::TunnelManager> tunnel_;
  mesh::MeshConfig mesh_cfg_;  // defaults + stored and given --set (mesh_settings.hpp)
  std::unique_ptr<mesh::MeshCore> mesh_;
  std::unique_ptr<dp::VniDevices> devices_;
  dp::Forwarder forwarder_;
  UdpSocket udp_;  // worker 0's socket; the control thread sends on it too
  std::vector<std::unique_ptr<UdpSocket>> worker_udp_;  // workers 1..N-1
  std::unique_ptr<DataPlane> dataplane_;
  uv_async_t slow_async_{};
  std::vector<SlowItem> slow_items_;
  // What the last published view was built from.
  dp::FibPtr view_fib_;
  std::shared_ptr<const crypto::DataSessions> view_sessions_;
  std::shared_ptr<const ChainMap> view_chains_ = std::make_shared<const ChainMap>();
  std::shared_ptr<const std::unordered_map<std::uint32_t, TapRef>> view_taps_ =
      std::make_shared<const std::unordered_map<std::uint32_t, TapRef>>();
  bool chains_dirty_ = false;
  bool taps_dirty_ = false;
  std::unique_ptr<ControlServer> control_;

  uv_timer_t tunnel_timer_{}, mesh_timer_{}, join_timer_{}, leave_timer_{};
  uv_signal_t sigint_{}, sigterm_{};
  bool handles_open_ = false;
  std::set<std::uint32_t> tap_watches_;  // VNIs whose TAP the workers read

  std::vector<dp::Attachment> attachments_;
  std::unordered_map<crypto::NodeId, crypto::CertChain, crypto::NodeIdHash> chains_;
  std::unordered_map<crypto::NodeId, std::vector<Locator>, crypto::NodeIdHash> tunnel_peers_;
  std::unordered_map<crypto::NodeId, mesh::Contact, crypto::NodeIdHash> bootstrap_;
  std::set<crypto::NodeId> rejected_bootstrap_;

  bool joining_ = false;
  bool leaving_ = false;
  bool stopping_ = false;
  bool fib_dirty_ = false;
  int exit_code_ = 0;
  std::uint64_t started_ms_ = 0;
  ControlServer::Respond leave_respond_;
  AgentCounters counters_;

  // Preallocated packet buffers (data path never allocates per packet).
  std::vector<std::uint8_t> tap_buf_, flood_buf_, reply_buf_, ctl_buf_;

  // Mapping system: frames waiting for an answer, answers to act on after the rebuild.
  PendingFrames pending_;
  std::vector<mesh::LookupKey> answered_;   // resolved: replay
  std::vector<mesh::LookupKey> unanswered_; // negative / timed out: flood or drop
  std::uint64_t next_touch_ms_ = 0;
};

}  // namespace meshd::agent
