#include "agent/daemon.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>

#include "agent/identity.hpp"
#include "agent/locators.hpp"
#include "agent/mesh_settings.hpp"
#include "agent/routes.hpp"

namespace meshd::agent {

namespace {

void fail_line(const std::string& msg) { std::fprintf(stderr, "meshd: %s\n", msg.c_str()); }

template <typename F>
void start_timer(uv_timer_t* t, std::uint64_t delay_ms) {
  uv_timer_start(t, [](uv_timer_t* h) { F::fire(static_cast<Daemon*>(h->data)); }, delay_ms, 0);
}

// Codes from the mesh and tunnel, said for a human; the code stays for searching.
std::string refusal_text(const std::string& reason) {
  struct Known {
    const char* code;
    const char* text;
  };
  static constexpr Known kKnown[] = {
      {"token.used_up", "the token has already been used as many times as it allows"},
      {"token.expired", "the token has expired"},
      {"token.revoked", "the token has been revoked"},
      {"cert.expired", "the certificate has expired"},
      {"cert.not_yet_valid", "the certificate is not valid yet (check the clocks)"},
      {"cert.bad_root_signature", "the token is not from this mesh's root key"},
  };
  for (const auto& k : kKnown) {
    if (reason == k.code) return std::string(k.text) + " (" + k.code + ")";
  }
  return reason;
}

// Clears what a failed or abandoned join wrote, so the directory is "not enrolled".
void clear_mesh_tables(Store& s) {
  for (const char* t : {"members", "mappings", "meta", "contacts", "attachments", "routes"}) s.clear(t);
}

}  // namespace

int Daemon::run(DaemonOptions opt) {
  std::signal(SIGPIPE, SIG_IGN);
  Daemon d(std::move(opt));
  const int rc = d.start();
  if (rc != 0) {
    d.stop(rc);
    uv_run(&d.loop_, UV_RUN_DEFAULT);
    return rc;
  }
  uv_run(&d.loop_, UV_RUN_DEFAULT);
  return d.exit_code_;
}

Daemon::Daemon(DaemonOptions opt) : opt_(std::move(opt)) {
  uv_loop_init(&loop_);
  loop_ready_ = true;
  tap_buf_.resize(kPacketBufLen);
  flood_buf_.resize(kPacketBufLen);
  reply_buf_.resize(2048);
}

Daemon::~Daemon() {
  // Close callbacks may still be pending; run them before closing the loop.
  uv_run(&loop_, UV_RUN_NOWAIT);
  control_.reset();
  if (loop_ready_) uv_loop_close(&loop_);
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

int Daemon::load_mesh_settings() {
  // Stored settings first, then this run's --set in order; the result is stored, so
  // what the operator set survives restarts.
  MeshSettings settings;
  if (auto raw = store_->get("agent", "mesh_settings")) {
    auto stored = decode_mesh_settings(std::string_view(reinterpret_cast<const char*>(raw->data()), raw->size()));
    if (!stored) {
      fail_line("stored membership settings: " + stored.error().message +
                " (fix with --set NAME=VALUE or NAME=default)");
      return 2;
    }
    settings = std::move(*stored);
  }
  for (const auto& a : opt_.mesh_settings) {
    if (auto st = parse_mesh_setting(a, settings); !st) {
      fail_line(st.error().message);
      return 2;
    }
  }
  mesh_cfg_ = mesh::MeshConfig{};
  if (auto st = apply_mesh_settings(settings, mesh_cfg_); !st) {
    fail_line(st.error().message);
    return 2;
  }
  if (!opt_.mesh_settings.empty()) {
    const std::string text = encode_mesh_settings(settings);
    store_->put("agent", "mesh_settings",
                ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  }
  for (const auto& [name, v] : settings) spdlog::info("membership setting {}={}", name, v);
  return 0;
}

int Daemon::start() {
  const std::string& dir = opt_.state_dir;
  if (agent_running(dir)) {
    fail_line("an agent is already running for " + dir);
    return 1;
  }
  auto store = Store::open(dir);
  if (!store) {
    fail_line(store.error().message);
    return 1;
  }
  store_ = std::move(store.value());
  // Held until exit: a second agent is refused, and CLI calls made while we start
  // (before the control socket exists) wait for us instead of failing.
  lock_fd_ = take_agent_lock(dir);
  if (lock_fd_ < 0) {
    fail_line(errno == EWOULDBLOCK ? "an agent is already running for " + dir
                                   : "cannot lock " + dir + "/agent.lock: " + std::strerror(errno));
    return 1;
  }

  if (opt_.joining_identity) {
    id_ = *opt_.joining_identity;
    joining_ = true;
    clear_mesh_tables(*store_);
  } else {
    const NodeState st = store_->node_state();
    if (st == NodeState::left) {
      fail_line("this node left the mesh; join again with a new token");
      return 2;
    }
    auto id = store_->load_identity();
    if (st != NodeState::enrolled || !id) {
      fail_line(dir + " holds no enrolled node (create a mesh with 'meshd init' or join one with 'meshd join')");
      return 2;
    }
    id_ = std::move(*id);
  }

  if (int rc = load_mesh_settings(); rc != 0) return rc;

  auto listen = Locator::parse(id_.listen);
  listen_ = listen ? *listen : *Locator::parse(kDefaultListen);
  locators_ = advertised_locators(listen_);
  if (locators_.empty()) spdlog::warn("no usable underlay address found; other nodes cannot reach this one");
  if (int rc = start_dataplane(); rc != 0) return rc;

  const std::uint64_t now = now_ms();
  started_ms_ = now;
  crypto::TunnelConfig tcfg;
  if (const char* c = std::getenv("MESHD_CIPHERS"); c != nullptr && *c != 0) {
    auto list = crypto::parse_cipher_list(c);
    if (!list) {
      fail_line(std::string("MESHD_CIPHERS=") + c + ": expected auto, aes-256-gcm, chacha20-poly1305 or a comma list");
      return 2;
    }
    tcfg.ciphers = std::move(*list);
  }
  std::string names;
  for (auto a : tcfg.ciphers) names += (names.empty() ? "" : ", ") + std::string(crypto::aead_alg_name(a));
  // While enrolling only a refusal may print (one line): debug then.
  const auto lvl = joining_ ? spdlog::level::debug : spdlog::level::info;
  const DataPlaneOptions& dpo = dataplane_->options();
  spdlog::log(lvl, "data plane: {} worker{}, offloads {}; transport ciphers, preferred first: {}", dpo.workers,
              dpo.workers == 1 ? "" : "s", dpo.offload ? "on" : "off", names);
  tunnel_ = std::make_unique<crypto::TunnelManager>(local_identity(id_), tcfg, rng_);
  const auto node_key = crypto::SigningKey::from_seed(id_.node_seed);
  mesh::NodeRecord self;
  self.chain = id_.chain;
  self.locators = locators_;
  std::vector<dp::Attachment> stored = joining_ ? std::vector<dp::Attachment>{} : store_->attachments();
  for (const auto& a : stored) self.vnis.push_back(a.vni);
  std::sort(self.vnis.begin(), self.vnis.end());
  self.vnis.erase(std::unique(self.vnis.begin(), self.vnis.end()), self.vnis.end());
  // The stored routes too: the join request carries this record, and one without them
  // would withdraw them from every member until restore_routes() announced them again.
  if (!joining_) self.routes = routes_to_announce(store_->routes(), stored, id_.chain);
  // Wall-clock based so a restarted node's record always supersedes the old one.
  self.version = now;
  self.sign(node_key);
  mesh_ = std::make_unique<mesh::MeshCore>(mesh_cfg_, node_key, id_.root_pub, std::move(self),
                                           rng_, store_.get(), now);
  devices_ = std::make_unique<dp::VniDevices>(
      static_cast<unsigned>(wire::kDefaultTenantMtu),
      dp::TapOptions{dataplane_->options().workers, dataplane_->options().offload});

  control_ = std::make_unique<ControlServer>(
      &loop_, [this](const ControlRequest& r, ControlServer::Respond respond) { on_control(r, std::move(respond)); });
  if (auto s = control_->listen(control_socket_path(dir)); !s) {
    fail_line(s.error().message);
    return 1;
  }

  // From here on nothing fails: open every handle at once so stop() closes them all.
  uv_async_init(&loop_, &slow_async_, [](uv_async_t* h) { static_cast<Daemon*>(h->data)->on_slow_items(); });
  slow_async_.data = this;
  std::vector<int> worker_fds{udp_.fd()};
  for (const auto& s : worker_udp_) worker_fds.push_back(s->fd());
  const Status dp_started = dataplane_->start(worker_fds);
  for (uv_timer_t* t : {&tunnel_timer_, &mesh_timer_, &join_timer_, &leave_timer_}) {
    uv_timer_init(&loop_, t);
    t->data = this;
  }
  for (uv_signal_t* s : {&sigint_, &sigterm_}) {
    uv_signal_init(&loop_, s);
    s->data = this;
  }
  const auto on_signal = [](uv_signal_t* h, int signum) {
    auto* d = static_cast<Daemon*>(h->data);
    spdlog::info("{}: stopping (devices and state kept)", signum == SIGINT ? "SIGINT" : "SIGTERM");
    d->stop(0);
  };
  uv_signal_start(&sigint_, on_signal, SIGINT);
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  handles_open_ = true;
  if (!dp_started) {
    // Out of fds or threads: nothing can be forwarded, say so and stop.
    fail_line("cannot start the data plane: " + dp_started.error().message);
    return 1;
  }

  if (!joining_) store_->save_locators(locators_);
  // While enrolling, progress is debug-level: a refused join must print exactly one
  // line ("meshd: join refused: ..."), like any other bad input.
  spdlog::log(joining_ ? spdlog::level::debug : spdlog::level::info,
              "node {} ({}) in mesh {} listening on {}", id_.name,
              crypto::node_id_short(id_.chain.node_id()), crypto::mesh_id(id_.root_pub),
              listen_.str());

  if (joining_) {
    std::vector<mesh::Contact> contacts;
    for (const auto& b : opt_.token->bootstrap) {
      if (b.node_id == id_.chain.node_id()) continue;
      mesh::Contact c{b.node_id, b.dh_pub, b.locators};
      bootstrap_.emplace(b.node_id, c);
      set_tunnel_peer(c.id, c.dh_pub, c.locators);
      contacts.push_back(std::move(c));
    }
    // The enrollment secret has done its work (the node cert is signed).
    sodium_memzero(opt_.token->enroll_seed.data(), opt_.token->enroll_seed.size());
    spdlog::debug("joining mesh {} through {} bootstrap peer(s)", opt_.token->mesh_id(),
                  contacts.size());
    mesh_->join(now, std::move(contacts));
    struct JoinTimeout {
      static void fire(Daemon* d) { d->on_join_timeout(); }
    };
    start_timer<JoinTimeout>(&join_timer_, kJoinTimeout_ms);
  } else {
    mesh_->restore(now);
    auto contacts = restored_contacts();
    for (const auto& c : contacts) set_tunnel_peer(c.id, c.dh_pub, c.locators);
    if (!contacts.empty()) {
      spdlog::info("rejoining through {} known member(s)", contacts.size());
      mesh_->join(now, std::move(contacts));
    }
    reattach_stored();
    restore_routes();  // withdraws the stored routes whose endpoint did not come back
  }
  rebuild_fib();
  pump(now_ms());
  return 0;
}

void Daemon::stop(int exit_code) {
  if (stopping_) return;
  stopping_ = true;
  exit_code_ = exit_code;
  if (control_) control_->close();
  if (!handles_open_) return;
  // Workers first: then nothing reads the TAPs or sockets any more.
  if (dataplane_) dataplane_->stop();
  std::vector<std::uint32_t> vnis;
  for (auto vni : tap_watches_) vnis.push_back(vni);
  for (auto vni : vnis) unwatch_tap(vni);
  uv_close(reinterpret_cast<uv_handle_t*>(&slow_async_), nullptr);
  for (uv_timer_t* t : {&tunnel_timer_, &mesh_timer_, &join_timer_, &leave_timer_}) {
    uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
  }
  for (uv_signal_t* s : {&sigint_, &sigterm_}) uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
}

void Daemon::arm_timer(uv_timer_t* t, std::uint64_t deadline_ms, std::uint64_t now) {
  if (stopping_) return;
  if (deadline_ms == UINT64_MAX) {
    uv_timer_stop(t);
    return;
  }
  const std::uint64_t delay = deadline_ms > now ? deadline_ms - now : 0;
  uv_timer_cb cb = t == &tunnel_timer_
                       ? static_cast<uv_timer_cb>([](uv_timer_t* h) {
                           auto* d = static_cast<Daemon*>(h->data);
                           const auto n = d->now_ms();
                           d->tunnel_->handle_timeout(n);
                           d->pump(n);
                         })
                       : static_cast<uv_timer_cb>([](uv_timer_t* h) {
                           auto* d = static_cast<Daemon*>(h->data);
                           const auto n = d->now_ms();
                           d->mesh_->handle_timeout(n);
                           d->pending_.expire(n);  // a safety net: answers release them
                           d->touch_used(n);
                           d->pump(n);
                         });
  uv_timer_start(t, cb, delay, 0);
}

void Daemon::rearm_timers(std::uint64_t now) {
  // Data the workers carry bypasses the tunnel manager: its timers (keepalive, rekey)
  // look at the sessions at least once a second.
  arm_timer(&tunnel_timer_, std::min(tunnel_->poll_timeout(), now + 1000), now);
  arm_timer(&mesh_timer_, mesh_->poll_timeout(), now);
}

void Daemon::on_join_accepted() {
  if (!joining_) return;
  joining_ = false;
  uv_timer_stop(&join_timer_);
  store_->save_identity(id_);
  store_->save_locators(locators_);
  store_->set_node_state(NodeState::enrolled);
  spdlog::info("joined mesh {} as {} ({}), listening on {}", crypto::mesh_id(id_.root_pub),
               id_.name, crypto::node_id_short(id_.chain.node_id()), listen_.str());
}

void Daemon::on_join_refused(const std::string& reason) {
  if (!joining_) {
    spdlog::warn("a member refused this node: {}", reason);
    return;
  }
  fail_line("join refused: " + refusal_text(reason));
  clear_mesh_tables(*store_);
  stop(2);
}

void Daemon::on_join_timeout() {
  if (!joining_) return;
  std::string tried;
  for (const auto& [id, c] : bootstrap_) {
    for (const auto& l : c.locators) tried += (tried.empty() ? "" : ", ") + l.str();
  }
  fail_line("no bootstrap peer answered within " + std::to_string(kJoinTimeout_ms / 1000) +
            " s (tried " + (tried.empty() ? "none" : tried) +
            "); check that this host can reach them over UDP");
  clear_mesh_tables(*store_);
  stop(1);
}

void Daemon::begin_leave(ControlServer::Respond respond) {
  if (leaving_) {
    respond(error_response(1, "this node is already leaving"));
    return;
  }
  leaving_ = true;
  leave_respond_ = std::move(respond);
  spdlog::info("leaving the mesh");
  const auto now = now_ms();
  mesh_->leave(now);
  pump(now);
  // Give the departure notice a moment to go out (and sessions to form if needed).
  struct LeaveDone {
    static void fire(Daemon* d) { d->finish_leave(); }
  };
  start_timer<LeaveDone>(&leave_timer_, kLeaveDrain_ms);
}

void Daemon::finish_leave() {
  std::vector<std::uint32_t> vnis;
  for (auto vni : tap_watches_) vnis.push_back(vni);
  for (auto vni : vnis) unwatch_tap(vni);
  auto st = devices_->teardown(attachments_);
  if (!st) spdlog::error("removing devices: {}", st.error().message);
  store_->clear("attachments");
  store_->clear("routes");
  attachments_.clear();
  store_->set_node_state(NodeState::left);
  spdlog::info("left the mesh; devices removed");
  if (leave_respond_) leave_respond_(ok_response());
  stop(0);
}

}  // namespace meshd::agent
