// Real-device tests: bridges, TAPs and veths in namespaces this test creates. They
// need root; without it they say so and pass vacuously. Everything runs inside a
// private "agent" namespace so the host's interfaces are never touched.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "dataplane/forwarder.hpp"
#include "dataplane/frame.hpp"
#include "dataplane/frames_for_test.hpp"
#include "dataplane/netlink.hpp"
#include "dataplane/tap.hpp"
#include "dataplane/vni_devices.hpp"

namespace meshd::dp {
namespace {

using test::ip4;

constexpr MacAddr kTenantMac{0x02, 0x00, 0x00, 0x00, 0x99, 0x01};
constexpr MacAddr kPeerMac{0x02, 0x00, 0x00, 0x00, 0x99, 0x02};
constexpr unsigned kMtu = 1400;
constexpr int kWaitMs = 3000;

bool have_root() {
  if (geteuid() == 0) return true;
  MESSAGE("not root: skipping real-device dataplane tests");
  return false;
}

int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

std::string sh_out(const std::string& cmd) {
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    std::array<char, 512> buf{};
    while (std::fgets(buf.data(), buf.size(), p) != nullptr && out.size() < 65536) {
      out += buf.data();
    }
    ::pclose(p);
  }
  return out;
}

IpPrefix prefix(const char* s) { return IpPrefix::parse(s).value(); }

// Two fresh namespaces: the agent's (this thread enters it) and a tenant's. Removed,
// and the thread brought home, in every case.
struct Namespaces {
  std::string agent = "meshd-dpt-" + std::to_string(::getpid()) + "-a";
  std::string tenant = "meshd-dpt-" + std::to_string(::getpid()) + "-t";
  int home = -1;
  bool ok = false;

  Namespaces() {
    home = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) return;
    if (sh("ip netns add " + agent) != 0 || sh("ip netns add " + tenant) != 0) return;
    const int fd = ::open(("/run/netns/" + agent).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ok = ::setns(fd, CLONE_NEWNET) == 0;
    ::close(fd);
  }
  ~Namespaces() {
    if (home >= 0) {
      if (::setns(home, CLONE_NEWNET) != 0) std::abort();  // never stay in a test netns
      ::close(home);
    }
    sh("ip netns del " + agent + " 2>/dev/null");
    sh("ip netns del " + tenant + " 2>/dev/null");
  }
  Namespaces(const Namespaces&) = delete;
  Namespaces& operator=(const Namespaces&) = delete;
};

bool contains(const std::vector<IpPrefix>& v, const IpPrefix& p) {
  return std::find(v.begin(), v.end(), p) != v.end();
}

// Reads frames from the TAP until `match` accepts one or the deadline passes.
template <typename Match>
bool wait_for_frame(const TapDevice& tap, Match match) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
  std::array<std::uint8_t, 2048> buf{};
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{tap.fd(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    for (int i = 0; i < 64; ++i) {
      const long n = tap.read(buf);
      if (n <= 0) break;
      if (match(ByteSpan(buf.data(), static_cast<std::size_t>(n)))) return true;
    }
  }
  return false;
}

template <typename Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < kWaitMs / 50; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

TEST_CASE("devices: tenant netns wired to a VNI; its ARP reaches the TAP") {
  if (!have_root()) return;
  Namespaces ns;
  REQUIRE(ns.ok);
  VniDevices dev(kMtu);
  auto tap = dev.ensure_vni(100);
  REQUIRE_MESSAGE(tap.ok(), tap.error().message);
  CHECK(dev.tap(100) == *tap);
  CHECK(dev.vnis() == std::vector<std::uint32_t>{100});

  auto nl = Netlink::open();
  REQUIRE(nl.ok());
  const auto br = nl->link_info("vni100");
  REQUIRE(br.ok());
  CHECK(br->kind == "bridge");
  CHECK(br->up);
  CHECK(br->mtu == kMtu);
  CHECK((br->mac[0] & 0x03) == 0x02);  // locally administered unicast
  const auto tp = nl->link_info("vni100-tap");
  REQUIRE(tp.ok());
  CHECK(tp->master_ifindex == br->ifindex);
  CHECK(tp->mtu == kMtu);
  CHECK(tp->up);

  Attachment a;
  a.vni = 100;
  a.netns = ns.tenant;
  a.mac = kTenantMac;
  a.ips = {prefix("10.99.0.1/24")};
  auto r = dev.attach(a);
  REQUIRE_MESSAGE(r.ok(), r.error().message);
  CHECK(r->ifname == "vni100");
  CHECK(r->host_ifname == VniDevices::host_ifname(100, ns.tenant, ""));
  CHECK(r->host_ifname.size() == 10);
  CHECK(r->mac == kTenantMac);

  const auto host = nl->link_info(r->host_ifname);
  REQUIRE(host.ok());
  CHECK(host->kind == "veth");
  CHECK(host->master_ifindex == br->ifindex);
  CHECK(host->mtu == kMtu);
  CHECK(host->up);
  // The bridge kept its own MAC when the ports joined.
  CHECK(nl->get_mac("vni100").value() == br->mac);

  auto tnl = Netlink::open_in_netns(ns.tenant);
  REQUIRE(tnl.ok());
  CHECK_FALSE(tnl->exists(r->host_ifname));
  const auto t = tnl->link_info("vni100");
  REQUIRE(t.ok());
  CHECK(t->mac == kTenantMac);
  CHECK(t->mtu == kMtu);
  CHECK(t->up);
  CHECK(tnl->link_info("lo")->up);
  const auto addrs = tnl->addresses("vni100");
  REQUIRE(addrs.ok());
  CHECK(contains(*addrs, prefix("10.99.0.1/24")));

  // The tenant's ARP request comes out of our TAP with the tenant's MAC.
  const TapDevice& td = **tap;
  sh("ip netns exec " + ns.tenant + " ping -c1 -W2 10.99.0.2 >/dev/null 2>&1 &");
  std::array<std::uint8_t, 64> req_frame{};
  std::size_t req_len = 0;
  const bool got = wait_for_frame(td, [&](ByteSpan f) {
    const auto eth = parse_eth(f);
    if (!eth || eth->ethertype != kEtherTypeArp || !eth->is_broadcast()) return false;
    const auto arp = parse_arp(eth->payload);
    if (!arp || arp->op != 1 || arp->target_ip != ip4(10, 99, 0, 2)) return false;
    CHECK(eth->src == kTenantMac);
    CHECK(arp->sender_mac == kTenantMac);
    CHECK(arp->sender_ip == ip4(10, 99, 0, 1));
    req_len = std::min(f.size(), req_frame.size());
    std::copy_n(f.begin(), req_len, req_frame.begin());
    return true;
  });
  REQUIRE(got);

  // The forwarder proxies it once the target is known remotely; the reply written to
  // the TAP reaches the tenant's neighbour table.
  auto fib = std::make_shared<Fib>();
  fib->local_macs.insert({100, kTenantMac});
  fib->remote_macs[{100, kPeerMac}] = RemoteEndpoint{NodeId{}};
  fib->ip_to_mac[{100, ip4(10, 99, 0, 2)}] = kPeerMac;
  Forwarder fwd;
  fwd.publish(fib);
  std::array<std::uint8_t, 64> reply{};
  const auto d = fwd.on_tap_frame(100, ByteSpan(req_frame.data(), req_len), reply);
  REQUIRE(d.kind == TapDecision::Kind::reply_local);
  CHECK(td.write(std::span<const std::uint8_t>(reply.data(), d.reply_len)) ==
        static_cast<long>(d.reply_len));
  CHECK(eventually([&] {
    return sh_out("ip netns exec " + ns.tenant + " ip neigh show 10.99.0.2 dev vni100")
               .find("02:00:00:00:99:02") != std::string::npos;
  }));
}

TEST_CASE("devices: attach is idempotent and survives an agent restart") {
  if (!have_root()) return;
  Namespaces ns;
  REQUIRE(ns.ok);
  Attachment a;
  a.vni = 7;
  a.netns = ns.tenant;
  a.ifname = "eth0";
  a.ips = {prefix("10.98.0.1/24"), prefix("fd00:98::1/64")};
  MacAddr bridge_mac{};
  Attachment first;
  {
    VniDevices dev(kMtu);
    auto r1 = dev.attach(a);  // no ensure_vni first: attach makes the VNI's devices
    REQUIRE_MESSAGE(r1.ok(), r1.error().message);
    first = *r1;
    CHECK((first.mac[0] & 0x03) == 0x02);  // generated: locally administered unicast
    auto r2 = dev.attach(a);
    REQUIRE_MESSAGE(r2.ok(), r2.error().message);
    CHECK(r2->mac == first.mac);  // no new MAC on re-attach
    CHECK(r2->host_ifname == first.host_ifname);
    bridge_mac = Netlink::open()->get_mac("vni7").value();
  }  // "agent killed": TAP gone, bridge and veth stay

  auto nl = Netlink::open();
  REQUIRE(nl.ok());
  CHECK_FALSE(nl->exists("vni7-tap"));
  CHECK(nl->exists("vni7"));
  CHECK(nl->exists(first.host_ifname));

  VniDevices dev(kMtu);
  auto tap = dev.ensure_vni(7);
  REQUIRE_MESSAGE(tap.ok(), tap.error().message);
  CHECK(nl->get_mac("vni7").value() == bridge_mac);
  CHECK(nl->link_info("vni7-tap")->master_ifindex == nl->ifindex("vni7").value());
  auto r3 = dev.attach(first);
  REQUIRE_MESSAGE(r3.ok(), r3.error().message);
  CHECK(r3->mac == first.mac);
  auto tnl = Netlink::open_in_netns(ns.tenant);
  REQUIRE(tnl.ok());
  const auto addrs = tnl->addresses("eth0").value();
  CHECK(std::count(addrs.begin(), addrs.end(), prefix("10.98.0.1/24")) == 1);
  CHECK(contains(addrs, prefix("fd00:98::1/64")));
  CHECK(tnl->get_mac("eth0").value() == first.mac);

  // A second endpoint in the same netns under another name gets its own veth.
  Attachment b = a;
  b.ifname = "eth1";
  b.ips = {prefix("10.98.0.2/24")};
  auto rb = dev.attach(b);
  REQUIRE_MESSAGE(rb.ok(), rb.error().message);
  CHECK(rb->host_ifname != first.host_ifname);
  CHECK(tnl->exists("eth1"));

  // Names that are taken, and namespaces that do not exist.
  Attachment c = a;
  c.ifname = "lo";
  auto rc = dev.attach(c);
  REQUIRE_FALSE(rc.ok());
  CHECK(rc.error().code == "attach.exists");
  Attachment d = a;
  d.netns = "meshd-dpt-no-such-netns";
  auto rd = dev.attach(d);
  REQUIRE_FALSE(rd.ok());
  CHECK(rd.error().code == "attach.netns");
  Attachment e = a;
  e.ifname = "much-too-long-name";
  auto re = dev.attach(e);
  REQUIRE_FALSE(re.ok());
  CHECK(re.error().code == "attach.ifname");

  // Detach removes the veth from both namespaces.
  REQUIRE(dev.detach(*rb).ok());
  CHECK_FALSE(nl->exists(rb->host_ifname));
  CHECK_FALSE(tnl->exists("eth1"));
  CHECK(tnl->exists("eth0"));
  CHECK(dev.detach(*rb).ok());  // again: nothing to do

  // Teardown removes everything this agent made.
  REQUIRE(dev.teardown({*r3}).ok());
  CHECK_FALSE(nl->exists(first.host_ifname));
  CHECK_FALSE(tnl->exists("eth0"));
  CHECK_FALSE(nl->exists("vni7"));
  CHECK_FALSE(nl->exists("vni7-tap"));
  CHECK(dev.vnis().empty());
}

TEST_CASE("devices: host mode puts the address on the bridge") {
  if (!have_root()) return;
  Namespaces ns;
  REQUIRE(ns.ok);
  VniDevices dev(kMtu);
  Attachment a;
  a.vni = 300;
  a.mac = kTenantMac;
  a.ips = {prefix("10.97.0.1/24")};
  auto r = dev.attach(a);
  REQUIRE_MESSAGE(r.ok(), r.error().message);
  CHECK(r->ifname == "vni300");
  CHECK(r->host_ifname.empty());
  auto nl = Netlink::open();
  REQUIRE(nl.ok());
  CHECK(nl->get_mac("vni300").value() == kTenantMac);
  CHECK(contains(nl->addresses("vni300").value(), prefix("10.97.0.1/24")));
  REQUIRE(dev.attach(a).ok());  // idempotent

  // Without --mac the endpoint uses the bridge's MAC.
  Attachment b;
  b.vni = 300;
  b.ips = {prefix("10.97.0.2/24")};
  auto rb = dev.attach(b);
  REQUIRE(rb.ok());
  CHECK(rb->mac == kTenantMac);

  REQUIRE(dev.detach(*r).ok());
  const auto left = nl->addresses("vni300").value();
  CHECK_FALSE(contains(left, prefix("10.97.0.1/24")));
  CHECK(contains(left, prefix("10.97.0.2/24")));
  CHECK(dev.detach(*r).ok());  // already gone
  REQUIRE(dev.remove_vni(300).ok());
  CHECK_FALSE(nl->exists("vni300"));
  CHECK(dev.tap(300) == nullptr);
}

TEST_CASE("devices: netlink and TAP errors are named") {
  if (!have_root()) return;
  Namespaces ns;
  REQUIRE(ns.ok);
  auto nl = Netlink::open();
  REQUIRE(nl.ok());
  auto missing = Netlink::open_in_netns("meshd-dpt-no-such-netns");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == "netns.not_found");
  const Status up = nl->set_up("nosuchdev0");
  REQUIRE_FALSE(up.ok());
  CHECK(up.error().code == "netlink.not_found");
  CHECK(up.error().message.find("nosuchdev0") != std::string::npos);
  CHECK(nl->delete_link("nosuchdev0").ok());
  REQUIRE(nl->create_bridge("dptbr0").ok());
  const Status again = nl->create_bridge("dptbr0");
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == "netlink.exists");
  CHECK(again.error().message.find("dptbr0") != std::string::npos);

  auto busy = TapDevice::open("dptbr0");  // a bridge, not a TAP
  REQUIRE_FALSE(busy.ok());
  CHECK(busy.error().code == "tap.busy");
  auto longname = TapDevice::open("this-name-is-too-long");
  REQUIRE_FALSE(longname.ok());
  CHECK(longname.error().code == "tap.open");

  auto tap = TapDevice::open("dpttap0");
  REQUIRE(tap.ok());
  std::array<std::uint8_t, 64> buf{};
  CHECK(tap->read(buf) == -1);  // non-blocking, nothing pending
  CHECK(errno == EAGAIN);
  CHECK(nl->exists("dpttap0"));
  { TapDevice moved = std::move(tap).value(); }
  CHECK_FALSE(nl->exists("dpttap0"));  // closing removed it
  CHECK(nl->delete_link("dptbr0").ok());
  CHECK_FALSE(nl->exists("dptbr0"));
}

}  // namespace
}  // namespace meshd::dp
