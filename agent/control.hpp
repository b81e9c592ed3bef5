// The agent's control socket: DIR/control.sock, a unix stream socket, mode 0600.
// One request line per connection, one response line, then the agent closes it.
// Bounded: request size (kControlRequestMaxBytes), clients (kControlClientsMax),
// and time (a client that has not sent a full line within kControlIdle_ms is cut),
// so a slow or hostile local client cannot block or exhaust the agent.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/control_protocol.hpp"
#include "crypto/result.hpp"

namespace meshd::agent {

inline constexpr std::size_t kControlClientsMax = 32;
inline constexpr std::uint64_t kControlIdle_ms = 10'000;
inline constexpr int kControlClientTimeout_ms = 10'000;

std::string control_socket_path(const std::string& state_dir);

// DIR/agent.lock: the running agent holds an exclusive flock on it for its whole life,
// from before the control socket exists. Returns the fd (keep it open), or -1 with
// errno EWOULDBLOCK if another agent holds it.
int take_agent_lock(const std::string& state_dir);

class ControlServer {
 public:
  // Sends the response line for one request; safe to call after the client went away
  // (then it does nothing). Call exactly once.
  using Respond = std::function<void(const nlohmann::json&)>;
  using Handler = std::function<void(const ControlRequest&, Respond)>;

  ControlServer(uv_loop_t* loop, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds `path` (a stale socket file left by a killed agent is replaced; a live
  // agent is detected by the caller first). Errors: "control.listen".
  Status listen(const std::string& path);
  // Stops accepting and closes all clients; the loop then runs the close callbacks.
  void close();

  std::uint64_t bad_requests() const { return bad_requests_; }
  std::uint64_t requests() const { return requests_; }
  std::uint64_t rejected_clients() const { return rejected_clients_; }

  struct Client;  // public for the libuv callbacks in control.cpp

 private:
  friend struct ControlCallbacks;
  void on_connection();
  void on_line(const std::shared_ptr<Client>& c, std::string_view line);
  void drop(Client* c);
  void sweep();

  uv_loop_t* loop_;
  Handler handler_;
  uv_pipe_t server_{};
  uv_timer_t sweep_timer_{};
  bool listening_ = false;
  bool closed_ = false;
  std::string path_;
  std::map<Client*, std::shared_ptr<Client>> clients_;
  std::uint64_t bad_requests_ = 0, requests_ = 0, rejected_clients_ = 0;
};

// Client side (the CLI). Connects, sends one request, reads one response line.
// Returns nullopt with `no_agent` set when nothing listens on the socket, or an
// error response on timeout / broken replies.
struct ControlCallResult {
  bool no_agent = false;
  nlohmann::json response;  // {"ok":...}
};
ControlCallResult control_call(const std::string& state_dir, const nlohmann::json& request,
                               int timeout_ms = kControlClientTimeout_ms);

// True if an agent answers on the socket (used before starting a second one).
bool agent_running(const std::string& state_dir);

}  // namespace meshd::agent
