#include <doctest/doctest.h>
#include <uv.h>

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "agent/control.hpp"
#include "agent/control_protocol.hpp"

using namespace meshd;
using namespace meshd::agent;

TEST_CASE("control: requests parse strictly and never throw") {
  auto ok = parse_control_request(
      R"({"cmd":"attach","vni":100,"netns":"t1","ips":["10.0.0.1/24"],"mac":"02:00:00:00:00:01","ifname":"eth0"})");
  REQUIRE(ok.ok());
  CHECK(ok->cmd == ControlCmd::attach);
  CHECK(ok->vni == 100);
  CHECK(ok->netns == std::optional<std::string>("t1"));
  CHECK(ok->ips.size() == 1);
  CHECK(ok->mac.has_value());

  const char* bad[] = {
      "",
      "garbage",
      "{",
      "[]",
      "null",
      "\"status\"",
      R"({})",
      R"({"cmd":5})",
      R"({"cmd":"format-disk"})",
      R"({"cmd":"attach"})",
      R"({"cmd":"attach","vni":"100","ips":["10.0.0.1/24"]})",
      R"({"cmd":"attach","vni":-1,"ips":["10.0.0.1/24"]})",
      R"({"cmd":"attach","vni":1.5,"ips":["10.0.0.1/24"]})",
      R"({"cmd":"attach","vni":16777216,"ips":["10.0.0.1/24"]})",
      R"({"cmd":"attach","vni":100})",
      R"({"cmd":"attach","vni":100,"ips":"10.0.0.1/24"})",
      R"({"cmd":"attach","vni":100,"ips":[]})",
      R"({"cmd":"attach","vni":100,"ips":[7]})",
      R"({"cmd":"attach","vni":100,"ips":["nope"]})",
      R"({"cmd":"attach","vni":100,"ips":["10.0.0.1/24"],"mac":5})",
      R"({"cmd":"attach","vni":100,"ips":["10.0.0.1/24"],"mac":"ff:ff:ff:ff:ff:ff"})",
      R"({"cmd":"attach","vni":100,"ips":["10.0.0.1/24"],"netns":["x"]})",
      R"({"cmd":"detach","vni":100,"ifname":"way-too-long-name"})",
      R"({"cmd":"revoke"})",
      R"({"cmd":"route_add","prefix":"192.168.77.0/24"})",
      R"({"cmd":"route_add","vni":100})",
      R"({"cmd":"route_add","vni":100,"prefix":7})",
      R"({"cmd":"route_add","vni":100,"prefix":"192.168.77.0/33"})",
      R"({"cmd":"route_add","vni":0,"prefix":"192.168.77.0/24"})",
      R"({"cmd":"route_add","vni":100,"prefix":"192.168.77.0/24","via":"10.0.0.1/24"})",
      R"({"cmd":"route_add","vni":100,"prefix":"192.168.77.0/24","via":5})",
      R"({"cmd":"route_del","vni":100,"prefix":"192.168.77.0/24","via":"10.0.0.1"})",
      R"({"cmd":"route_del","vni":100})",
      "{\"cmd\":\"status\"\xff}",
  };
  for (const char* s : bad) {
    auto r = parse_control_request(s);
    CHECK_MESSAGE(!r.ok(), s);
    if (!r.ok()) CHECK(r.error().code == "control.bad_request");
  }
  std::string huge = R"({"cmd":"status","pad":")" + std::string(kControlRequestMaxBytes, 'a') + "\"}";
  CHECK(!parse_control_request(huge).ok());
  // Unknown extra fields are ignored (forward compatible).
  CHECK(parse_control_request(R"({"cmd":"status","extra":{"x":[1,2]}})").ok());
}

TEST_CASE("control: encode and parse agree") {
  ControlRequest r;
  r.cmd = ControlCmd::attach;
  r.vni = 42;
  r.ips = {*IpPrefix::parse("10.1.0.1/16")};
  r.mac = MacAddr{2, 1, 2, 3, 4, 5};
  r.ifname = "eth3";
  auto back = parse_control_request(dump_line(encode_control_request(r)));
  REQUIRE(back.ok());
  CHECK(back->vni == 42);
  CHECK(back->ips == r.ips);
  CHECK(back->mac == r.mac);
  CHECK(back->ifname == r.ifname);
  CHECK(!back->netns);
  ControlRequest add;
  add.cmd = ControlCmd::route_add;
  add.vni = 100;
  add.prefix = *IpPrefix::parse("192.168.77.0/24");
  add.via = *IpAddr::parse("10.30.0.254");
  auto add_back = parse_control_request(dump_line(encode_control_request(add)));
  REQUIRE(add_back.ok());
  CHECK(add_back->cmd == ControlCmd::route_add);
  CHECK(add_back->vni == 100);
  CHECK(add_back->prefix == add.prefix);
  CHECK(add_back->via == add.via);
  // The agent normalises too: a client that sends host bits gets the network.
  auto host_bits = parse_control_request(R"({"cmd":"route_del","vni":5,"prefix":"192.168.77.9/24"})");
  REQUIRE(host_bits.ok());
  CHECK(host_bits->cmd == ControlCmd::route_del);
  CHECK(host_bits->prefix.str() == "192.168.77.0/24");
  CHECK(!host_bits->via);
  // Invalid UTF-8 in a response never throws.
  CHECK(!dump_line(error_response(2, std::string("bad \xff byte"))).empty());
}

namespace {

struct ServerThread {
  std::string dir;
  uv_loop_t loop{};
  uv_async_t stop{};
  std::unique_ptr<ControlServer> server;
  std::thread th;
  int handled = 0;

  ServerThread() {
    char tmpl[] = "/tmp/meshd-control-test-XXXXXX";
    dir = mkdtemp(tmpl);
    uv_loop_init(&loop);
    server = std::make_unique<ControlServer>(&loop, [this](const ControlRequest& r, ControlServer::Respond respond) {
      ++handled;
      if (r.cmd == ControlCmd::status) {
        auto j = ok_response();
        j["name"] = "test";
        respond(j);
      } else {
        respond(error_response(2, "no"));
      }
    });
    REQUIRE(server->listen(control_socket_path(dir)).ok());
    stop.data = this;
    uv_async_init(&loop, &stop, [](uv_async_t* a) {
      auto* self = static_cast<ServerThread*>(a->data);
      self->server->close();
      uv_close(reinterpret_cast<uv_handle_t*>(&self->stop), nullptr);
    });
    th = std::thread([this] { uv_run(&loop, UV_RUN_DEFAULT); });
  }
  ~ServerThread() {
    uv_async_send(&stop);
    th.join();
    server.reset();
    uv_loop_close(&loop);
    std::filesystem::remove_all(dir);
  }
};

}  // namespace

TEST_CASE("control: server answers, rejects bad and oversize requests") {
  ServerThread s;
  CHECK(agent_running(s.dir));
  auto r = control_call(s.dir, nlohmann::json{{"cmd", "status"}});
  CHECK(!r.no_agent);
  CHECK(r.response.value("ok", false));
  CHECK(r.response.value("name", std::string()) == "test");

  auto bad = control_call(s.dir, nlohmann::json{{"cmd", "nope"}});
  CHECK(!bad.response.value("ok", true));
  CHECK(bad.response.value("code", 0) == 2);

  nlohmann::json big{{"cmd", "status"}, {"pad", std::string(kControlRequestMaxBytes + 10, 'x')}};
  auto over = control_call(s.dir, big);
  CHECK(!over.response.value("ok", true));
  CHECK(s.server->bad_requests() == 2);

  auto gone = control_call("/nonexistent-meshd-dir", nlohmann::json{{"cmd", "status"}});
  CHECK(gone.no_agent);
}

TEST_CASE("control: revoke carries a signed revocation") {
  ControlRequest r;
  r.cmd = ControlCmd::revoke;
  mesh::Revocation rev;
  rev.node[0] = 0xAB;
  rev.token_id[3] = 9;
  rev.issued_s = 1234;
  rev.reason = "lost laptop";
  rev.sig[63] = 7;
  r.revocation = rev;
  auto back = parse_control_request(dump_line(encode_control_request(r)));
  REQUIRE(back.ok());
  REQUIRE(back->revocation);
  CHECK(*back->revocation == rev);
  CHECK(!parse_control_request(R"({"cmd":"revoke","node":"ab","issued_s":1,"sig":"00"})").ok());
  CHECK(!parse_control_request(R"({"cmd":"revoke","node":")" + std::string(64, 'a') +
                               R"(","token_id":"abc","issued_s":1,"sig":")" + std::string(128, '0') + "\"}")
             .ok());
  CHECK(!parse_control_request(R"({"cmd":"revoke","node":")" + std::string(64, 'a') + R"(","issued_s":-1,"sig":")" +
                               std::string(128, '0') + "\"}")
             .ok());
}

TEST_CASE("control: one agent lock per state dir, released when its holder closes it") {
  char tmpl[] = "/tmp/meshd-lock-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  const int first = take_agent_lock(dir);
  REQUIRE(first >= 0);
  errno = 0;
  CHECK(take_agent_lock(dir) == -1);  // a second agent on the same dir
  CHECK(errno == EWOULDBLOCK);
  // No socket yet but the lock is held: an agent is starting; a client gives up only
  // after waiting for it (bounded), then reports no agent.
  CHECK_FALSE(agent_running(dir));
  ::close(first);
  const int again = take_agent_lock(dir);
  CHECK(again >= 0);
  ::close(again);
  std::filesystem::remove_all(dir);
}
