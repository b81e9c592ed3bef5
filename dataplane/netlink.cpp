#include "dataplane/netlink.hpp"

#include <fcntl.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/inet.h>
#include <netlink/route/link/veth.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <linux/if.h>
#include <linux/ip.h>

namespace meshd::dp {

namespace {

struct LinkDeleter { void operator()(rtnl_link* l) const { rtnl_link_put(l); } };
struct AddrDeleter { void operator()(rtnl_addr* a) const { rtnl_addr_put(a); } };
struct NlAddrDeleter { void operator()(nl_addr* a) const { nl_addr_put(a); } };
struct CacheDeleter { void operator()(nl_cache* c) const { nl_cache_free(c); } };
using LinkPtr = std::unique_ptr<rtnl_link, LinkDeleter>;
using AddrPtr = std::unique_ptr<rtnl_addr, AddrDeleter>;
using NlAddrPtr = std::unique_ptr<nl_addr, NlAddrDeleter>;
using CachePtr = std::unique_ptr<nl_cache, CacheDeleter>;

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { if (fd >= 0) ::close(fd); }
};

const char* code_for(int nl_err) {
  switch (nl_err < 0 ? -nl_err : nl_err) {
    case NLE_EXIST: return "netlink.exists";
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
    case NLE_NOADDR: return "netlink.not_found";
    case NLE_PERM: return "netlink.perm";
    case NLE_BUSY: return "netlink.busy";
    default: return "netlink.failed";
  }
}

bool is_not_found(int nl_err) {
  const int e = nl_err < 0 ? -nl_err : nl_err;
  return e == NLE_OBJ_NOTFOUND || e == NLE_NODEV || e == NLE_NOADDR;
}

bool valid_netns_name(const std::string& n) {
  return !n.empty() && n.size() < 256 && n != "." && n != ".." &&
         n.find('/') == std::string::npos;
}

// Netns names live under /run/netns (iproute2 convention, which the operator uses).
std::string netns_path(const std::string& n) { return "/run/netns/" + n; }

Error netns_open_error(const std::string& name, int err) {
  if (err == ENOENT) {
    return make_error("netns.not_found", "no network namespace '" + name + "' (" +
                                             netns_path(name) +
                                             "): create it with 'ip netns add " + name + "'");
  }
  return make_error("netns.open", "cannot open " + netns_path(name) + ": " +
                                      std::strerror(err));
}

NlAddrPtr build_ip(const IpAddr& ip, std::uint8_t prefix_len) {
  const int family = ip.is_v4() ? AF_INET : AF_INET6;
  NlAddrPtr a(nl_addr_build(family, ip.bytes.data(), ip.is_v4() ? 4 : 16));
  if (a) nl_addr_set_prefixlen(a.get(), prefix_len);
  return a;
}

}  // namespace

struct Netlink::Impl {
  nl_sock* sk = nullptr;
  std::string where;  // " in netns X" for messages; empty for our own namespace

  ~Impl() {
    if (sk != nullptr) nl_socket_free(sk);
  }

  Error nl_error(const std::string& what, int err) const {
    return make_error(code_for(err), what + where + ": " + nl_geterror(err));
  }

  // The kernel's view of a link; nullptr and the libnl error if it is not there.
  LinkPtr get(const std::string& ifname, int& err) const {
    rtnl_link* l = nullptr;
    err = rtnl_link_get_kernel(sk, 0, ifname.c_str(), &l);
    return LinkPtr(err < 0 ? nullptr : l);
  }

  // Applies `fill(change)` to an existing link with one RTM_NEWLINK/SETLINK.
  template <typename Fill>
  Status change(const std::string& ifname, const std::string& what, Fill fill) {
    int err = 0;
    LinkPtr orig = get(ifname, err);
    if (!orig) return nl_error(what + ": link " + ifname, err);
    LinkPtr ch(rtnl_link_alloc());
    if (!ch) return make_error("netlink.failed", what + ": out of memory");
    fill(ch.get());
    err = rtnl_link_change(sk, orig.get(), ch.get(), 0);
    if (err < 0) return nl_error(what + " " + ifname, err);
    return ok_status();
  }

  Status addr_op(const std::string& ifname, const IpPrefix& p, bool add) {
    const std::string what =
        std::string(add ? "add address " : "delete address ") + p.str() + " on " + ifname;
    if (!p.addr.is_v4() && !p.addr.is_v6()) {
      return make_error("netlink.failed", what + ": not an IPv4/IPv6 address");
    }
    if (p.len > (p.addr.is_v4() ? 32 : 128)) {
      return make_error("netlink.failed", what + ": prefix length too long");
    }
    int err = 0;
    LinkPtr link = get(ifname, err);
    if (!link) return nl_error(what, err);
    AddrPtr a(rtnl_addr_alloc());
    NlAddrPtr local = build_ip(p.addr, p.len);
    if (!a || !local) return make_error("netlink.failed", what + ": out of memory");
    rtnl_addr_set_ifindex(a.get(), rtnl_link_get_ifindex(link.get()));
    err = rtnl_addr_set_local(a.get(), local.get());
    if (err < 0) return nl_error(what, err);
    rtnl_addr_set_prefixlen(a.get(), p.len);
    if (add && p.addr.is_v4() && p.len < 31) {
      // Like `ip addr add ... brd +`: a subnet broadcast so broadcast pings work.
      IpAddr b = p.addr;
      for (int bit = p.len; bit < 32; ++bit) {
        b.bytes[static_cast<std::size_t>(bit / 8)] |= static_cast<std::uint8_t>(0x80 >> (bit % 8));
      }
      NlAddrPtr brd = build_ip(b, 32);
      if (brd) rtnl_addr_set_broadcast(a.get(), brd.get());
    }
    err = add ? rtnl_addr_add(sk, a.get(), 0) : rtnl_addr_delete(sk, a.get(), 0);
    if (err < 0) return nl_error(what, err);
    return ok_status();
  }
};

Netlink::Netlink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Netlink::Netlink(Netlink&&) noexcept = default;
Netlink& Netlink::operator=(Netlink&&) noexcept = default;
Netlink::~Netlink() = default;

Result<Netlink> Netlink::open() {
  auto impl = std::make_unique<Impl>();
  impl->sk = nl_socket_alloc();
  if (impl->sk == nullptr) return make_error("netlink.failed", "netlink: out of memory");
  const int err = nl_connect(impl->sk, NETLINK_ROUTE);
  if (err < 0) {
    return make_error(code_for(err),
                      std::string("cannot open an rtnetlink socket: ") + nl_geterror(err));
  }
  return Netlink(std::move(impl));
}

Result<Netlink> Netlink::open_in_netns(const std::string& netns) {
  if (!valid_netns_name(netns)) {
    return make_error("netns.not_found", "invalid network namespace name '" + netns + "'");
  }
  Fd target(::open(netns_path(netns).c_str(), O_RDONLY | O_CLOEXEC));
  if (target.fd < 0) return netns_open_error(netns, errno);
  // thread-self, not self: setns() is per thread and the main thread may be elsewhere.
  Fd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (home.fd < 0) {
    return make_error("netns.open", std::string("cannot open /proc/thread-self/ns/net: ") +
                                        std::strerror(errno));
  }
  if (::setns(target.fd, CLONE_NEWNET) != 0) {
    const int e = errno;
    return make_error("netns.enter", "cannot enter network namespace '" + netns + "': " +
                                         std::strerror(e) +
                                         (e == EPERM ? " (need root or CAP_SYS_ADMIN)" : ""));
  }
  Result<Netlink> nl = open();
  if (::setns(home.fd, CLONE_NEWNET) != 0) {
    // The thread would go on working in the tenant's namespace: never acceptable.
    std::fprintf(stderr, "meshd: fatal: cannot return from network namespace '%s': %s\n",
                 netns.c_str(), std::strerror(errno));
    std::abort();
  }
  if (nl.ok()) nl->impl_->where = " in netns " + netns;
  return nl;
}

Result<int> Netlink::ifindex(const std::string& ifname) {
  int err = 0;
  LinkPtr l = impl_->get(ifname, err);
  if (!l) return impl_->nl_error("link " + ifname, err);
  return rtnl_link_get_ifindex(l.get());
}

bool Netlink::exists(const std::string& ifname) { return ifindex(ifname).ok(); }

Status Netlink::create_bridge(const std::string& name) {
  LinkPtr l(rtnl_link_alloc());
  if (!l) return make_error("netlink.failed", "create bridge " + name + ": out of memory");
  int err = rtnl_link_set_type(l.get(), "bridge");
  if (err < 0) return impl_->nl_error("create bridge " + name, err);
  rtnl_link_set_name(l.get(), name.c_str());
  err = rtnl_link_add(impl_->sk, l.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err < 0) return impl_->nl_error("create bridge " + name, err);
  return ok_status();
}

Status Netlink::create_veth(const std::string& name, const std::string& peer,
                            const std::optional<std::string>& peer_netns) {
  const std::string what = "create veth " + name + "/" + peer +
                           (peer_netns ? " (peer in netns " + *peer_netns + ")" : "");
  std::optional<Fd> ns;
  if (peer_netns) {
    if (!valid_netns_name(*peer_netns)) {
      return make_error("netns.not_found", what + ": invalid namespace name");
    }
    ns.emplace(::open(netns_path(*peer_netns).c_str(), O_RDONLY | O_CLOEXEC));
    if (ns->fd < 0) return netns_open_error(*peer_netns, errno);
  }
  rtnl_link* veth = rtnl_link_veth_alloc();
  if (veth == nullptr) return make_error("netlink.failed", what + ": out of memory");
  rtnl_link* p = rtnl_link_veth_get_peer(veth);  // libnl 3.7 takes a reference
  rtnl_link_set_name(veth, name.c_str());
  rtnl_link_set_name(p, peer.c_str());
  if (ns) rtnl_link_set_ns_fd(p, ns->fd);
  const int err = rtnl_link_add(impl_->sk, veth, NLM_F_CREATE | NLM_F_EXCL);
  rtnl_link_put(p);
  rtnl_link_veth_release(veth);
  if (err < 0) return impl_->nl_error(what, err);
  return ok_status();
}

Status Netlink::set_master(const std::string& ifname, const std::string& bridge) {
  Result<int> master = ifindex(bridge);
  if (!master) return master.error();
  const int idx = *master;
  return impl_->change(ifname, "enslave to " + bridge,
                       [idx](rtnl_link* c) { rtnl_link_set_master(c, idx); });
}

Status Netlink::set_up(const std::string& ifname) {
  return impl_->change(ifname, "set up", [](rtnl_link* c) { rtnl_link_set_flags(c, IFF_UP); });
}

Status Netlink::set_multicast(const std::string& ifname, bool on) {
  return impl_->change(ifname, on ? "set multicast on" : "set multicast off", [on](rtnl_link* c) {
    if (on) {
      rtnl_link_set_flags(c, IFF_MULTICAST);
    } else {
      rtnl_link_unset_flags(c, IFF_MULTICAST);
    }
  });
}

Status Netlink::set_mtu(const std::string& ifname, unsigned mtu) {
  return impl_->change(ifname, "set mtu " + std::to_string(mtu),
                       [mtu](rtnl_link* c) { rtnl_link_set_mtu(c, mtu); });
}

Status Netlink::set_mac(const std::string& ifname, const MacAddr& mac) {
  NlAddrPtr a(nl_addr_build(AF_LLC, mac.data(), mac.size()));
  if (!a) return make_error("netlink.failed", "set mac on " + ifname + ": out of memory");
  nl_addr* raw = a.get();
  return impl_->change(ifname, "set mac " + mac_str(mac),
                       [raw](rtnl_link* c) { rtnl_link_set_addr(c, raw); });
}

Status Netlink::set_promote_secondaries(const std::string& ifname, bool on) {
  int err = 0;
  Status s = impl_->change(ifname, "set promote_secondaries", [&err, on](rtnl_link* c) {
    err = rtnl_link_inet_set_conf(c, IPV4_DEVCONF_PROMOTE_SECONDARIES, on ? 1 : 0);
  });
  if (err < 0) return impl_->nl_error("set promote_secondaries on " + ifname, err);
  return s;
}

Result<MacAddr> Netlink::get_mac(const std::string& ifname) {
  Result<LinkInfo> info = link_info(ifname);
  if (!info) return info.error();
  return info->mac;
}

Status Netlink::add_address(const std::string& ifname, const IpPrefix& prefix) {
  return impl_->addr_op(ifname, prefix, true);
}

Status Netlink::del_address(const std::string& ifname, const IpPrefix& prefix) {
  return impl_->addr_op(ifname, prefix, false);
}

Status Netlink::delete_link(const std::string& ifname) {
  int err = 0;
  LinkPtr l = impl_->get(ifname, err);
  if (!l) {
    if (is_not_found(err)) return ok_status();
    return impl_->nl_error("delete link " + ifname, err);
  }
  err = rtnl_link_delete(impl_->sk, l.get());
  if (err < 0 && !is_not_found(err)) return impl_->nl_error("delete link " + ifname, err);
  return ok_status();
}

Result<LinkInfo> Netlink::link_info(const std::string& ifname) {
  int err = 0;
  LinkPtr l = impl_->get(ifname, err);
  if (!l) return impl_->nl_error("link " + ifname, err);
  LinkInfo info;
  info.ifindex = rtnl_link_get_ifindex(l.get());
  info.master_ifindex = rtnl_link_get_master(l.get());
  info.link_ifindex = rtnl_link_get_link(l.get());
  info.mtu = rtnl_link_get_mtu(l.get());
  info.up = (rtnl_link_get_flags(l.get()) & IFF_UP) != 0;
  if (const char* k = rtnl_link_get_type(l.get())) info.kind = k;
  nl_addr* a = rtnl_link_get_addr(l.get());
  if (a != nullptr && nl_addr_get_len(a) == info.mac.size()) {
    std::memcpy(info.mac.data(), nl_addr_get_binary_addr(a), info.mac.size());
  }
  return info;
}

Result<std::vector<IpPrefix>> Netlink::addresses(const std::string& ifname) {
  Result<int> idx = ifindex(ifname);
  if (!idx) return idx.error();
  nl_cache* raw = nullptr;
  const int err = rtnl_addr_alloc_cache(impl_->sk, &raw);
  if (err < 0) return impl_->nl_error("list addresses of " + ifname, err);
  CachePtr cache(raw);
  std::vector<IpPrefix> out;
  for (nl_object* o = nl_cache_get_first(raw); o != nullptr; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_ifindex(a) != *idx) continue;
    nl_addr* local = rtnl_addr_get_local(a);
    if (local == nullptr) continue;
    IpPrefix p;
    const int fam = nl_addr_get_family(local);
    const unsigned len = nl_addr_get_len(local);
    if (fam == AF_INET && len == 4) {
      p.addr.family = 4;
    } else if (fam == AF_INET6 && len == 16) {
      p.addr.family = 6;
    } else {
      continue;
    }
    std::memcpy(p.addr.bytes.data(), nl_addr_get_binary_addr(local), len);
    p.len = static_cast<std::uint8_t>(rtnl_addr_get_prefixlen(a));
    out.push_back(p);
  }
  return out;
}

}  // namespace meshd::dp
