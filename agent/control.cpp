#include "agent/control.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace meshd::agent {

struct ControlServer::Client {
  ControlServer* server = nullptr;
  uv_pipe_t pipe{};
  std::string buf;
  std::uint64_t connected_ms = 0;
  bool got_line = false;
  bool responded = false;
  bool closing = false;
};

struct ControlCallbacks {
  static void on_connection(uv_stream_t* s, int status) {
    auto* self = static_cast<ControlServer*>(s->data);
    if (status == 0) self->on_connection();
  }
  static void on_alloc(uv_handle_t*, std::size_t suggested, uv_buf_t* b) {
    // Small reads: requests are short and this bounds what one client can pin.
    static thread_local char storage[4096];
    (void)suggested;
    *b = uv_buf_init(storage, sizeof storage);
  }
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
    auto* c = static_cast<ControlServer::Client*>(s->data);
    ControlServer* self = c->server;
    if (n < 0) {
      self->drop(c);
      return;
    }
    if (c->got_line || n == 0) return;
    c->buf.append(b->base, static_cast<std::size_t>(n));
    const auto nl = c->buf.find('\n');
    if (nl == std::string::npos) {
      if (c->buf.size() > kControlRequestMaxBytes) {
        c->got_line = true;
        uv_read_stop(s);
        ++self->bad_requests_;
        auto sp = self->clients_.at(c);
        auto line = dump_line(error_response(2, "request too large"));
        write_and_close(sp, std::move(line));
      }
      return;
    }
    c->got_line = true;
    uv_read_stop(s);
    std::string line = c->buf.substr(0, nl);
    c->buf.clear();
    self->on_line(self->clients_.at(c), line);
  }
  static void write_and_close(const std::shared_ptr<ControlServer::Client>& c, std::string line) {
    if (c->closing || c->responded) return;
    c->responded = true;
    struct Req {
      uv_write_t w{};
      std::string data;
      std::shared_ptr<ControlServer::Client> client;
    };
    auto* req = new Req{};
    req->data = std::move(line);
    req->client = c;
    req->w.data = req;
    uv_buf_t b = uv_buf_init(req->data.data(), static_cast<unsigned>(req->data.size()));
    const int rc = uv_write(&req->w, reinterpret_cast<uv_stream_t*>(&c->pipe), &b, 1,
                            [](uv_write_t* w, int) {
                              auto* r = static_cast<Req*>(w->data);
                              r->client->server->drop(r->client.get());
                              delete r;
                            });
    if (rc != 0) {
      c->server->drop(c.get());
      delete req;
    }
  }
};

std::string control_socket_path(const std::string& state_dir) { return state_dir + "/control.sock"; }

ControlServer::ControlServer(uv_loop_t* loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)) {}

ControlServer::~ControlServer() { close(); }

Status ControlServer::listen(const std::string& path) {
  sockaddr_un probe{};
  if (path.size() >= sizeof probe.sun_path) {
    return make_error("control.listen", "state directory path too long for a unix socket: " + path);
  }
  path_ = path;
  ::unlink(path.c_str());
  uv_pipe_init(loop_, &server_, 0);
  server_.data = this;
  // Owner-only from the moment the socket exists: umask during bind, chmod after.
  const mode_t old = ::umask(0177);
  int rc = uv_pipe_bind(&server_, path.c_str());
  ::umask(old);
  if (rc == 0) rc = ::chmod(path.c_str(), 0600) == 0 ? 0 : -errno;
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 16, ControlCallbacks::on_connection);
  }
  listening_ = true;
  uv_timer_init(loop_, &sweep_timer_);
  sweep_timer_.data = this;
  if (rc != 0) {
    close();
    return make_error("control.listen", "cannot listen on " + path + ": " + uv_strerror(rc));
  }
  uv_timer_start(&sweep_timer_, [](uv_timer_t* t) { static_cast<ControlServer*>(t->data)->sweep(); },
                 1000, 1000);
  return ok_status();
}

void ControlServer::close() {
  if (!listening_ || closed_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), nullptr);
  std::vector<Client*> all;
  for (auto& [p, _] : clients_) all.push_back(p);
  for (auto* c : all) drop(c);
  ::unlink(path_.c_str());
}

void ControlServer::on_connection() {
  auto c = std::make_shared<Client>();
  c->server = this;
  c->connected_ms = uv_now(loop_);
  uv_pipe_init(loop_, &c->pipe, 0);
  c->pipe.data = c.get();
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&server_), reinterpret_cast<uv_stream_t*>(&c->pipe)) != 0) {
    // The handle still needs closing; the shared_ptr keeps it alive until then.
    clients_.emplace(c.get(), c);
    drop(c.get());
    return;
  }
  clients_.emplace(c.get(), c);
  if (clients_.size() > kControlClientsMax) {
    ++rejected_clients_;
    drop(c.get());
    return;
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->pipe), ControlCallbacks::on_alloc,
                ControlCallbacks::on_read);
}

void ControlServer::on_line(const std::shared_ptr<Client>& c, std::string_view line) {
  ++requests_;
  auto req = parse_control_request(line);
  if (!req) {
    ++bad_requests_;
    ControlCallbacks::write_and_close(c, dump_line(error_response(2, req.error().message)));
    return;
  }
  std::weak_ptr<Client> weak = c;
  handler_(*req, [weak](const nlohmann::json& resp) {
    if (auto sp = weak.lock()) ControlCallbacks::write_and_close(sp, dump_line(resp));
  });
}

void ControlServer::drop(Client* c) {
  auto it = clients_.find(c);
  if (it == clients_.end() || c->closing) return;
  c->closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), [](uv_handle_t* h) {
    auto* cl = static_cast<Client*>(h->data);
    cl->server->clients_.erase(cl);  // last owner unless a write is in flight
  });
}

void ControlServer::sweep() {
  const std::uint64_t now = uv_now(loop_);
  std::vector<Client*> stale;
  for (auto& [p, c] : clients_) {
    // Only clients that never sent a full line: a request being handled (leave)
    // answers on its own schedule.
    if (!c->got_line && now - c->connected_ms > kControlIdle_ms) stale.push_back(p);
  }
  for (auto* p : stale) drop(p);
}

// ---- client ------------------------------------------------------------------------

namespace {

// An agent holds the lock but its socket may not be up yet (it is starting).
bool agent_starting(const std::string& state_dir) {
  const int fd = ::open((state_dir + "/agent.lock").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

int connect_socket(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return -1;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::uint64_t mono_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

// Connects to the agent's socket; while an agent is starting (lock held, socket not
// bound yet), retries for up to kStartingWait_ms so `meshd join ... &` followed at once
// by `meshd attach` just works.
int connect_agent(const std::string& state_dir) {
  constexpr std::uint64_t kStartingWait_ms = 5000;
  constexpr useconds_t kRetry_us = 50'000;
  const std::string path = control_socket_path(state_dir);
  const std::uint64_t give_up = mono_ms() + kStartingWait_ms;
  for (;;) {
    const int fd = connect_socket(path);
    if (fd >= 0 || !agent_starting(state_dir) || mono_ms() >= give_up) return fd;
    ::usleep(kRetry_us);
  }
}

}  // namespace

int take_agent_lock(const std::string& state_dir) {
  const int fd = ::open((state_dir + "/agent.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

bool agent_running(const std::string& state_dir) {
  const int fd = connect_agent(state_dir);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

ControlCallResult control_call(const std::string& state_dir, const nlohmann::json& request,
                               int timeout_ms) {
  ControlCallResult out;
  const int fd = connect_agent(state_dir);
  if (fd < 0) {
    out.no_agent = true;
    return out;
  }
  const std::string line = dump_line(request);
  std::size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      out.response = error_response(1, "lost the connection to the agent");
      return out;
    }
    sent += static_cast<std::size_t>(n);
  }
  const std::uint64_t deadline = mono_ms() + static_cast<std::uint64_t>(timeout_ms);
  std::string reply;
  char buf[4096];
  while (reply.find('\n') == std::string::npos) {
    const std::uint64_t now = mono_ms();
    if (now >= deadline) {
      ::close(fd);
      out.response = error_response(1, "the agent did not answer within " +
                                           std::to_string(timeout_ms / 1000) + " s");
      return out;
    }
    pollfd p{fd, POLLIN, 0};
    const int pr = ::poll(&p, 1, static_cast<int>(deadline - now));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
    if (reply.size() > 16 * 1024 * 1024) break;
  }
  ::close(fd);
  const auto nl = reply.find('\n');
  auto j = nlohmann::json::parse(reply.substr(0, nl == std::string::npos ? reply.size() : nl),
                                 nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    out.response = error_response(1, "the agent closed the connection without a valid answer");
  } else {
    out.response = std::move(j);
  }
  return out;
}

}  // namespace meshd::agent
