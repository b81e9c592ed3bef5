// The per-VNI devices in the agent's namespace and the tenant attachments.
//
// Per VNI N: a bridge "vniN" (the VNI interface; host/sidecar-mode addresses go on it)
// and a TAP "vniN-tap" enslaved to it, which the agent reads and writes. `attach` with
// a netns creates a veth: the tenant end (default "vniN", like the host-mode interface,
// or --ifname) in the netns with the address and MAC, the host end ("mv" + 8 hex digits
// of a hash of vni, netns and ifname: unique and within IFNAMSIZ) enslaved to the
// bridge. All links get the tenant MTU. The bridge gets an explicit random locally
// administered MAC when created, so it keeps it when ports join; in host mode that MAC
// (or --mac) is the endpoint's MAC.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/result.hpp"
#include "dataplane/tap.hpp"

namespace meshd::dp {

struct Attachment {
  std::uint32_t vni = 0;
  std::optional<std::string> netns;  // nullopt = host mode
  std::string ifname;                // tenant-side interface name
  std::string host_ifname;           // veth end on the bridge (netns mode)
  MacAddr mac{};
  std::vector<IpPrefix> ips;
};

class VniDevices {
 public:
  // TAPs are opened with `tap` (queues = data-plane workers, offloads).
  explicit VniDevices(unsigned tenant_mtu, TapOptions tap = {});
  // Closes the TAPs only: bridges and veths stay, so a restarted agent (or one that
  // was killed) finds tenants still wired and re-adopts them (attach is idempotent).
  ~VniDevices();
  // Deletes every bridge, TAP and veth this agent made (meshd leave).
  Status teardown(const std::vector<Attachment>& attachments);

  // Creates (or re-uses) the bridge and TAP for `vni`. Returns the TAP. Errors:
  // "vni.invalid", "vni.exists" (vniN is not a bridge), "tap.*", netlink errors.
  Result<const TapDevice*> ensure_vni(std::uint32_t vni);
  const TapDevice* tap(std::uint32_t vni) const;
  std::vector<std::uint32_t> vnis() const;
  // Removes the VNI's devices (when its last attachment is gone).
  Status remove_vni(std::uint32_t vni);

  // Wires an endpoint. Idempotent: an existing veth/address that matches is kept. `a.mac` all-zero = generate a locally administered one
  // (filled in on return); empty ifname = default. Errors name what is wrong:
  // "attach.netns" (no such netns), "attach.exists" (ifname taken), "attach.ifname"
  // (invalid name), netlink errors. Creates the VNI's devices if needed.
  Result<Attachment> attach(Attachment a);
  // Undoes attach(); the veth disappears from both namespaces.
  Status detach(const Attachment& a);

  static std::string bridge_name(std::uint32_t vni);  // "vni100"
  static std::string tap_name(std::uint32_t vni);     // "vni100-tap"
  // Host-side veth name for a netns attachment (empty ifname = default).
  static std::string host_ifname(std::uint32_t vni, const std::string& netns,
                                 const std::string& ifname);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshd::dp
