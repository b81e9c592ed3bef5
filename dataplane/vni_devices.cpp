#include "dataplane/vni_devices.hpp"

#include <linux/if.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "crypto/cert.hpp"
#include "dataplane/netlink.hpp"

namespace meshd::dp {

namespace {

bool valid_vni(std::uint32_t vni) { return vni >= 1 && vni <= crypto::kVniMax; }

Error bad_vni(std::uint32_t vni) {
  return make_error("vni.invalid", "VNI " + std::to_string(vni) + " is outside 1.." +
                                       std::to_string(crypto::kVniMax));
}

bool valid_ifname(const std::string& n) {
  if (n.empty() || n.size() >= IFNAMSIZ || n == "." || n == "..") return false;
  for (char c : n) {
    if (c == '/' || c == ':' || c <= ' ' || c == 0x7f) return false;
  }
  return true;
}

bool is_zero(const MacAddr& m) {
  for (std::uint8_t b : m) {
    if (b != 0) return false;
  }
  return true;
}

// Control path only: OS randomness is fine here (not in mesh/ or crypto/).
// Writes one kernel knob (/proc/sys or /sys, both per network namespace: the
// agent's). A kernel without the feature has no such file: nothing to do.
Status write_knob(const std::string& path, const char* value) {
  std::FILE* f = std::fopen(path.c_str(), "we");
  if (f == nullptr) {
    if (errno == ENOENT) return ok_status();
    return make_error("vni.sysctl", "cannot open " + path + ": " + std::strerror(errno));
  }
  const bool written = std::fputs(value, f) >= 0;
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    return make_error("vni.sysctl", "cannot write " + path + ": " + std::strerror(errno));
  }
  return ok_status();
}

// IPv6 on the agent's own devices would make the kernel send router solicitations,
// MLD reports and DAD probes from the bridge's and TAP's MACs: not tenant endpoints,
// so the forwarder would drop and count them as spoofed at idle. The TAP never needs
// IPv6; the bridge only when a host-mode endpoint makes it an endpoint.
Status set_ipv6_enabled(const std::string& ifname, bool enabled) {
  return write_knob("/proc/sys/net/ipv6/conf/" + ifname + "/disable_ipv6", enabled ? "0\n" : "1\n");
}

// Multicast snooping makes the bridge join the IGMP/MLD report groups itself (reports
// from its MAC into the overlay), and could hide multicast from the TAP port. The
// overlay replicates BUM traffic head-end, so the bridge just floods.
Status disable_multicast_snooping(const std::string& bridge) {
  return write_knob("/sys/class/net/" + bridge + "/bridge/multicast_snooping", "0\n");
}

MacAddr random_local_mac() {
  std::random_device rd;
  MacAddr m{};
  for (std::size_t i = 0; i < m.size(); i += 2) {
    const unsigned v = rd();
    m[i] = static_cast<std::uint8_t>(v);
    m[i + 1] = static_cast<std::uint8_t>(v >> 8);
  }
  m[0] = static_cast<std::uint8_t>((m[0] & 0xfc) | 0x02);  // unicast, locally administered
  return m;
}

// Tolerates what an earlier run (or a killed agent) left in place.
Status ignore_code(Status s, const char* code) {
  if (!s.ok() && s.error().code == code) return ok_status();
  return s;
}

Error rewrap(const Error& e, const char* code) { return make_error(code, e.message); }

std::string default_ifname(std::uint32_t vni, const std::string& ifname) {
  return ifname.empty() ? VniDevices::bridge_name(vni) : ifname;
}

}  // namespace

struct VniDevices::Impl {
  unsigned mtu = 0;
  TapOptions tap_opt;
  std::optional<Netlink> nl;  // opened on first use: the constructor cannot fail
  std::map<std::uint32_t, TapDevice> taps;

  Result<Netlink*> netlink() {
    if (!nl) {
      Result<Netlink> r = Netlink::open();
      if (!r) return r.error();
      nl.emplace(std::move(r).value());
    }
    return &*nl;
  }
};

VniDevices::VniDevices(unsigned tenant_mtu, TapOptions tap) : impl_(std::make_unique<Impl>()) {
  impl_->mtu = tenant_mtu;
  impl_->tap_opt = tap;
}

VniDevices::~VniDevices() = default;

std::string VniDevices::bridge_name(std::uint32_t vni) { return "vni" + std::to_string(vni); }
std::string VniDevices::tap_name(std::uint32_t vni) { return bridge_name(vni) + "-tap"; }

std::string VniDevices::host_ifname(std::uint32_t vni, const std::string& netns,
                                    const std::string& ifname) {
  // FNV-1a over (vni, netns, ifname): stable across restarts, so a restarted agent
  // finds the veth it made; 32 bits keep collisions unlikely for any realistic count.
  std::uint32_t h = 2166136261u;
  auto feed = [&h](std::uint8_t b) { h = (h ^ b) * 16777619u; };
  for (int i = 0; i < 4; ++i) feed(static_cast<std::uint8_t>(vni >> (8 * i)));
  for (char c : netns) feed(static_cast<std::uint8_t>(c));
  feed(0);
  for (char c : default_ifname(vni, ifname)) feed(static_cast<std::uint8_t>(c));
  char buf[16];
  std::snprintf(buf, sizeof(buf), "mv%08x", h);
  return buf;
}

Result<const TapDevice*> VniDevices::ensure_vni(std::uint32_t vni) {
  if (!valid_vni(vni)) return bad_vni(vni);
  if (auto it = impl_->taps.find(vni); it != impl_->taps.end()) return &it->second;
  Result<Netlink*> nlr = impl_->netlink();
  if (!nlr) return nlr.error();
  Netlink& nl = **nlr;
  const std::string br = bridge_name(vni);
  const std::string tn = tap_name(vni);

  if (Result<LinkInfo> info = nl.link_info(br); info.ok()) {
    // A restarted agent re-uses its bridge (and the tenants wired to it).
    if (info->kind != "bridge") {
      return make_error("vni.exists", br + " exists and is not a bridge (kind '" +
                                          info->kind + "'); delete or rename it");
    }
  } else {
    if (Status s = nl.create_bridge(br); !s) return s.error();
    // An explicit address keeps the bridge from taking its lowest port's MAC, which
    // would change whenever tenants come and go.
    if (Status s = nl.set_mac(br, random_local_mac()); !s) return s.error();
  }
  if (Status s = nl.set_mtu(br, impl_->mtu); !s) return s.error();
  // Until a host-mode endpoint makes the bridge an endpoint itself, it is plumbing:
  // no IPv6, no IGMP/MLD chatter from its MAC into the overlay.
  if (Status s = set_ipv6_enabled(br, false); !s) return s.error();
  if (Status s = nl.set_multicast(br, false); !s) return s.error();
  if (Status s = disable_multicast_snooping(br); !s) return s.error();
  // Host-mode endpoints of one subnet share the bridge; detaching the first must not
  // take the others' addresses with it.
  if (Status s = nl.set_promote_secondaries(br, true); !s) return s.error();

  Result<TapDevice> tap = TapDevice::open(tn, impl_->tap_opt);
  if (!tap) return tap.error();
  if (Status s = nl.set_mtu(tn, impl_->mtu); !s) return s.error();
  if (Status s = set_ipv6_enabled(tn, false); !s) return s.error();
  if (Status s = nl.set_multicast(tn, false); !s) return s.error();
  if (Status s = nl.set_master(tn, br); !s) return s.error();
  if (Status s = nl.set_up(tn); !s) return s.error();
  if (Status s = nl.set_up(br); !s) return s.error();
  auto [it, inserted] = impl_->taps.emplace(vni, std::move(tap).value());
  return &it->second;
}

const TapDevice* VniDevices::tap(std::uint32_t vni) const {
  auto it = impl_->taps.find(vni);
  return it == impl_->taps.end() ? nullptr : &it->second;
}

std::vector<std::uint32_t> VniDevices::vnis() const {
  std::vector<std::uint32_t> out;
  out.reserve(impl_->taps.size());
  for (const auto& [vni, tap] : impl_->taps) out.push_back(vni);
  return out;
}

Status VniDevices::remove_vni(std::uint32_t vni) {
  if (!valid_vni(vni)) return bad_vni(vni);
  impl_->taps.erase(vni);  // closing the fd removes the (non-persistent) TAP
  Result<Netlink*> nlr = impl_->netlink();
  if (!nlr) return nlr.error();
  if (Status s = (*nlr)->delete_link(tap_name(vni)); !s) return s;
  return (*nlr)->delete_link(bridge_name(vni));
}

Result<Attachment> VniDevices::attach(Attachment a) {
  Result<const TapDevice*> tap = ensure_vni(a.vni);
  if (!tap) return tap.error();
  Netlink& nl = *impl_->nl;  // opened by ensure_vni
  const std::string br = bridge_name(a.vni);

  if (!a.netns) {
    // Host/sidecar mode: the bridge is the endpoint's interface.
    a.ifname = br;
    a.host_ifname.clear();
    Result<MacAddr> cur = nl.get_mac(br);
    if (!cur) return cur.error();
    if (is_zero(a.mac)) {
      a.mac = *cur;
    } else if (a.mac != *cur) {
      if (Status s = nl.set_mac(br, a.mac); !s) return s.error();
    }
    // The bridge is an endpoint now: its own traffic (ND, multicast) is tenant traffic.
    if (Status s = set_ipv6_enabled(br, true); !s) return s.error();
    if (Status s = nl.set_multicast(br, true); !s) return s.error();
    for (const IpPrefix& p : a.ips) {
      if (Status s = ignore_code(nl.add_address(br, p), "netlink.exists"); !s) return s.error();
    }
    return a;
  }

  const std::string& ns = *a.netns;
  a.ifname = default_ifname(a.vni, a.ifname);
  if (!valid_ifname(a.ifname)) {
    return make_error("attach.ifname", "interface name '" + a.ifname +
                                           "' is invalid (1..15 characters, no '/', ':' "
                                           "or spaces)");
  }
  if (a.host_ifname.empty()) a.host_ifname = host_ifname(a.vni, ns, a.ifname);
  Result<Netlink> tr = Netlink::open_in_netns(ns);
  if (!tr) {
    return tr.error().code == "netns.not_found" ? rewrap(tr.error(), "attach.netns")
                                                : tr.error();
  }
  Netlink& tnl = *tr;

  bool created = false;
  if (Result<LinkInfo> host = nl.link_info(a.host_ifname); host.ok()) {
    if (host->kind != "veth") {
      return make_error("attach.exists", a.host_ifname + " exists and is not a veth (kind '" +
                                             host->kind + "')");
    }
    Result<LinkInfo> peer = tnl.link_info(a.ifname);
    if (!peer || peer->ifindex != host->link_ifindex) {
      // Left over from an earlier life whose tenant end is gone or elsewhere: rebuild.
      if (Status s = nl.delete_link(a.host_ifname); !s) return s.error();
    }
  }
  if (!nl.exists(a.host_ifname)) {
    if (tnl.exists(a.ifname)) {
      return make_error("attach.exists", "interface " + a.ifname + " already exists in netns " +
                                             ns + "; choose another with --ifname");
    }
    if (Status s = nl.create_veth(a.host_ifname, a.ifname, a.netns); !s) return s.error();
    created = true;
  }

  // Host end: on the bridge, tenant MTU, up.
  if (Status s = nl.set_mtu(a.host_ifname, impl_->mtu); !s) return s.error();
  if (Status s = nl.set_master(a.host_ifname, br); !s) return s.error();
  if (Status s = nl.set_up(a.host_ifname); !s) return s.error();

  // Tenant end: MAC (kept across re-attach when none was asked for), MTU, addresses, up.
  Result<MacAddr> cur = tnl.get_mac(a.ifname);
  if (!cur) return cur.error();
  if (is_zero(a.mac)) a.mac = created ? random_local_mac() : *cur;
  if (a.mac != *cur) {
    if (Status s = tnl.set_mac(a.ifname, a.mac); !s) return s.error();
  }
  if (Status s = tnl.set_mtu(a.ifname, impl_->mtu); !s) return s.error();
  for (const IpPrefix& p : a.ips) {
    if (Status s = ignore_code(tnl.add_address(a.ifname, p), "netlink.exists"); !s) {
      return s.error();
    }
  }
  if (Status s = tnl.set_up(a.ifname); !s) return s.error();
  if (Status s = tnl.set_up("lo"); !s) return s.error();
  return a;
}

Status VniDevices::detach(const Attachment& a) {
  if (!valid_vni(a.vni)) return bad_vni(a.vni);
  Result<Netlink*> nlr = impl_->netlink();
  if (!nlr) return nlr.error();
  Netlink& nl = **nlr;
  if (!a.netns) {
    const std::string br = bridge_name(a.vni);
    if (!nl.exists(br)) return ok_status();  // bridge gone: so are its addresses
    for (const IpPrefix& p : a.ips) {
      if (Status s = ignore_code(nl.del_address(br, p), "netlink.not_found"); !s) return s;
    }
    return ok_status();
  }
  // Deleting one end of a veth deletes both, whichever namespace the peer is in.
  const std::string host =
      a.host_ifname.empty() ? host_ifname(a.vni, *a.netns, a.ifname) : a.host_ifname;
  return nl.delete_link(host);
}

Status VniDevices::teardown(const std::vector<Attachment>& attachments) {
  Status first = ok_status();
  auto keep_first = [&first](Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  std::vector<std::uint32_t> vs = vnis();
  for (const Attachment& a : attachments) {
    keep_first(detach(a));
    vs.push_back(a.vni);
  }
  for (std::uint32_t vni : vs) keep_first(remove_vni(vni));  // repeats are no-ops
  return first;
}

}  // namespace meshd::dp
