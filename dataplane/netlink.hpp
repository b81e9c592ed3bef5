// Link and address configuration through rtnetlink (libnl-route-3): no shelling out
// to `ip`. Every call returns an error value with a message naming the device.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/result.hpp"

namespace meshd::dp {

// What the kernel says about one link (for idempotent re-use and for tests).
struct LinkInfo {
  int ifindex = 0;
  int master_ifindex = 0;  // 0 = not enslaved
  int link_ifindex = 0;    // IFLA_LINK: a veth's peer, numbered in the peer's namespace
  unsigned mtu = 0;
  bool up = false;         // IFF_UP (administratively up)
  MacAddr mac{};
  std::string kind;        // "veth", "bridge", "tun"; empty if the kernel gave none
};

class Netlink {
 public:
  // A socket in the calling thread's current network namespace.
  static Result<Netlink> open();
  // A socket inside the named namespace (/run/netns/NAME), opened by entering it
  // briefly on the calling thread. Error "netns.not_found" if there is no such netns.
  // Error codes of the other calls: "netlink.exists", "netlink.not_found",
  // "netlink.perm", "netlink.busy", "netlink.failed"; the message names the device,
  // the namespace (if not ours) and libnl's description.
  static Result<Netlink> open_in_netns(const std::string& netns);
  Netlink(Netlink&&) noexcept;
  Netlink& operator=(Netlink&&) noexcept;
  ~Netlink();

  Result<int> ifindex(const std::string& ifname);
  bool exists(const std::string& ifname);
  Status create_bridge(const std::string& name);
  // Creates a veth pair; `peer` is created directly in `peer_netns` (/run/netns/NAME)
  // when given.
  Status create_veth(const std::string& name, const std::string& peer,
                     const std::optional<std::string>& peer_netns);
  Status set_master(const std::string& ifname, const std::string& bridge);
  Status set_up(const std::string& ifname);
  Status set_mtu(const std::string& ifname, unsigned mtu);
  // IFF_MULTICAST: off keeps the local stack from sending IGMP/MLD on the device.
  Status set_multicast(const std::string& ifname, bool on);
  Status set_mac(const std::string& ifname, const MacAddr& mac);
  Result<MacAddr> get_mac(const std::string& ifname);
  Status add_address(const std::string& ifname, const IpPrefix& prefix);
  Status del_address(const std::string& ifname, const IpPrefix& prefix);
  // Succeeds if the link is gone already.
  Status delete_link(const std::string& ifname);
  // IPv4 promote_secondaries: deleting one address of a subnet keeps the others
  // (otherwise the kernel removes every secondary with the primary).
  Status set_promote_secondaries(const std::string& ifname, bool on);
  // Added: link state and addresses, so callers can check before changing things.
  Result<LinkInfo> link_info(const std::string& ifname);
  Result<std::vector<IpPrefix>> addresses(const std::string& ifname);

 private:
  struct Impl;
  explicit Netlink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshd::dp
