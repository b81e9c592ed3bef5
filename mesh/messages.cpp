#include "mesh/messages.hpp"

namespace meshd::mesh {

namespace {

using codec::ArrayReader;
using codec::Writer;

constexpr std::size_t kChainBytesMax = 48 * 1024;  // two 4096-VNI scopes fit
constexpr std::size_t kUpdatesMax = 4096;
constexpr std::size_t kVniDigestsMax = kVnisServedMax;

void put_ip(Writer& w, const IpAddr& ip) {
  w.array(2);
  w.u64(ip.family);
  w.bin(ip.bytes);
}

IpAddr get_ip(ArrayReader& r) {
  ArrayReader a = r.array(8);
  IpAddr ip;
  ip.family = static_cast<std::uint8_t>(a.u64_max(6));
  if (ip.family != 4 && ip.family != 6) a.fail();
  ip.bytes = a.fixed<16>();
  return ip;
}

void put_record(Writer& w, const NodeRecord& rec) {
  w.array(rec.routes.empty() ? 5 : 6);
  w.bin(rec.chain.encode());
  w.array(rec.locators.size());
  for (const Locator& l : rec.locators) {
    w.array(3);
    w.u64(l.ip.family);
    w.bin(l.ip.bytes);
    w.u64(l.port);
  }
  w.array(rec.vnis.size());
  for (std::uint32_t v : rec.vnis) w.u64(v);
  w.u64(rec.version);
  w.bin(rec.sig);
  if (!rec.routes.empty()) {  // issue 4: a sixth field, absent without routes
    w.array(rec.routes.size());
    for (const RouteAnnouncement& r : rec.routes) {
      w.array(4);
      w.u64(r.vni);
      put_ip(w, r.prefix.addr);
      w.u64(r.prefix.len);
      w.bin(r.next_hop_mac);
    }
  }
}

NodeRecord get_record(ArrayReader& r) {
  NodeRecord rec;
  ArrayReader a = r.array(16);
  ByteSpan chain = a.bin(kChainBytesMax);
  if (a.ok()) {
    auto c = crypto::CertChain::decode(chain);
    if (c.ok()) {
      rec.chain = std::move(c.value());
    } else {
      a.fail();
    }
  }
  ArrayReader locs = a.array(kLocatorsMax);
  while (locs.ok() && locs.remaining() > 0) {
    ArrayReader l = locs.array(8);
    Locator loc;
    loc.ip.family = static_cast<std::uint8_t>(l.u64_max(6));
    if (loc.ip.family != 4 && loc.ip.family != 6) l.fail();
    loc.ip.bytes = l.fixed<16>();
    loc.port = static_cast<std::uint16_t>(l.u64_max(0xFFFF));
    rec.locators.push_back(loc);
  }
  ArrayReader vnis = a.array(kVnisServedMax);
  while (vnis.ok() && vnis.remaining() > 0) {
    auto v = static_cast<std::uint32_t>(vnis.u64_max(crypto::kVniMax));
    // Sorted and unique, so the signed bytes have one form and lookups can bisect.
    if (v == 0 || (!rec.vnis.empty() && v <= rec.vnis.back())) vnis.fail();
    rec.vnis.push_back(v);
  }
  rec.version = a.u64();
  rec.sig = a.fixed<64>();
  if (a.remaining() > 0) {
    ArrayReader routes = a.array(kRoutesPerNodeMax);
    while (routes.ok() && routes.remaining() > 0) {
      ArrayReader e = routes.array(4);
      RouteAnnouncement r;
      r.vni = static_cast<std::uint32_t>(e.u64_max(crypto::kVniMax));
      r.prefix.addr = get_ip(e);
      r.prefix.len = static_cast<std::uint8_t>(e.u64_max(128));
      r.next_hop_mac = e.fixed<6>();
      // One form for the signed bytes: sorted, unique, lengths that fit the family.
      if (r.vni == 0 || r.prefix.len > (r.prefix.addr.is_v4() ? 32 : 128) ||
          (!rec.routes.empty() && !(rec.routes.back() < r))) {
        e.fail();
      }
      rec.routes.push_back(r);
    }
  }
  return rec;
}

MemberState get_state(ArrayReader& r) {
  return static_cast<MemberState>(r.u64_max(static_cast<std::uint64_t>(MemberState::left)));
}

void put_member(Writer& w, const MemberEntry& m) {
  w.array(m.proof ? 4 : 3);
  put_record(w, m.record);
  w.u64(static_cast<std::uint64_t>(m.state));
  w.u64(m.incarnation);
  if (m.proof) w.bin(*m.proof);
}

MemberEntry get_member(ArrayReader& r) {
  MemberEntry m;
  ArrayReader a = r.array(8);
  m.record = get_record(a);
  m.state = get_state(a);
  m.incarnation = a.u64();
  if (a.remaining() > 0) m.proof = a.fixed<64>();
  return m;
}

void put_member_state(Writer& w, const MemberStateEntry& m) {
  w.array(m.proof ? 5 : 4);
  w.bin(m.node);
  w.u64(m.version);
  w.u64(static_cast<std::uint64_t>(m.state));
  w.u64(m.incarnation);
  if (m.proof) w.bin(*m.proof);
}

MemberStateEntry get_member_state(ArrayReader& r) {
  MemberStateEntry m;
  ArrayReader a = r.array(8);
  m.node = a.fixed<32>();
  m.version = a.u64();
  m.state = get_state(a);
  m.incarnation = a.u64();
  if (a.remaining() > 0) m.proof = a.fixed<64>();
  return m;
}

void put_mapping(Writer& w, const EndpointMapping& m) {
  w.array(7);
  w.u64(m.vni);
  w.bin(m.mac);
  w.array(m.ips.size());
  for (const IpAddr& ip : m.ips) put_ip(w, ip);
  w.bin(m.owner);
  w.u64(m.seq);
  w.boolean(m.removed);
  w.bin(m.sig);
}

EndpointMapping get_mapping(ArrayReader& r) {
  EndpointMapping m;
  ArrayReader a = r.array(16);
  m.vni = static_cast<std::uint32_t>(a.u64_max(crypto::kVniMax));
  if (m.vni == 0) a.fail();
  m.mac = a.fixed<6>();
  ArrayReader ips = a.array(kEndpointIpsMax);
  while (ips.ok() && ips.remaining() > 0) m.ips.push_back(get_ip(ips));
  m.owner = a.fixed<32>();
  m.seq = a.u64();
  m.removed = a.boolean();
  m.sig = a.fixed<64>();
  return m;
}

void put_key(Writer& w, const LookupKey& k) {
  w.array(3);
  w.u64(k.vni);
  if (k.is_ip()) {
    w.u64(1);
    put_ip(w, k.ip);
  } else {
    w.u64(0);
    w.bin(k.mac);
  }
}

LookupKey get_key(ArrayReader& r) {
  LookupKey k;
  ArrayReader a = r.array(3);
  k.vni = static_cast<std::uint32_t>(a.u64_max(crypto::kVniMax));
  if (k.vni == 0) a.fail();
  if (a.u64_max(1) == 1) {
    k.ip = get_ip(a);
  } else {
    k.mac = a.fixed<6>();
  }
  return k;
}

std::vector<EndpointMapping> get_mappings(ArrayReader& r, const codec::Limits& limits) {
  std::vector<EndpointMapping> out;
  ArrayReader map = r.array(limits.array_len_max);
  while (map.ok() && map.remaining() > 0) out.push_back(get_mapping(map));
  return out;
}

void put_revocation(Writer& w, const Revocation& rv) {
  w.array(5);
  w.bin(rv.node);
  w.bin(rv.token_id);
  w.u64(rv.issued_s);
  w.str(rv.reason.size() > kRevocationReasonMax ? rv.reason.substr(0, kRevocationReasonMax)
                                                : rv.reason);
  w.bin(rv.sig);
}

Revocation get_revocation(ArrayReader& r) {
  Revocation rv;
  ArrayReader a = r.array(8);
  rv.node = a.fixed<32>();
  rv.token_id = a.fixed<16>();
  rv.issued_s = a.u64();
  rv.reason = a.str(kRevocationReasonMax);
  rv.sig = a.fixed<64>();
  return rv;
}

void put_update(Writer& w, const Update& u) {
  const auto* su = std::get_if<StateUpdate>(&u);
  w.array(su == nullptr ? 2 : su->proof ? 6 : su->accuser ? 5 : 4);
  if (const auto* rv = std::get_if<Revocation>(&u)) {
    w.u64(3);
    put_revocation(w, *rv);
  } else if (const auto* m = std::get_if<MemberEntry>(&u)) {
    w.u64(0);
    put_member(w, *m);
  } else if (const auto* s = std::get_if<StateUpdate>(&u)) {
    w.u64(1);
    w.bin(s->node);
    w.u64(static_cast<std::uint64_t>(s->state));
    w.u64(s->incarnation);
    // accuser, then proof: an empty accuser when there is a proof but no accuser.
    if (s->accuser) {
      w.bin(*s->accuser);
    } else if (s->proof) {
      w.bin(ByteSpan{});
    }
    if (s->proof) w.bin(*s->proof);
  } else {
    w.u64(2);
    put_mapping(w, std::get<EndpointMapping>(u));
  }
}

Update get_update(ArrayReader& r) {
  ArrayReader a = r.array(8);
  switch (a.u64()) {
    case 0: return get_member(a);
    case 1: {
      StateUpdate s;
      s.node = a.fixed<32>();
      s.state = get_state(a);
      s.incarnation = a.u64();
      if (a.remaining() > 0) {
        ByteSpan who = a.bin(32);
        if (who.size() == 32) {
          NodeId id{};
          std::copy(who.begin(), who.end(), id.begin());
          s.accuser = id;
        } else if (!who.empty()) {
          a.fail();
        }
      }
      if (a.remaining() > 0) s.proof = a.fixed<64>();
      return s;
    }
    case 2: return get_mapping(a);
    case 3: return get_revocation(a);
    default: a.fail(); return StateUpdate{};
  }
}

std::vector<Update> get_updates(ArrayReader& r) {
  std::vector<Update> out;
  ArrayReader a = r.array(kUpdatesMax);
  while (a.ok() && a.remaining() > 0) out.push_back(get_update(a));
  return out;
}

// A trailing list appended in a later revision: absent reads as empty.
std::vector<Revocation> get_revocations(ArrayReader& r, const codec::Limits& limits) {
  std::vector<Revocation> out;
  if (r.remaining() == 0) return out;
  ArrayReader a = r.array(limits.array_len_max);
  while (a.ok() && a.remaining() > 0) out.push_back(get_revocation(a));
  return out;
}

Writer header(MsgType t, std::size_t fields) {
  Writer w;
  w.array(2 + fields);
  w.u64(kMessageVersion);
  w.u64(static_cast<std::uint64_t>(t));
  return w;
}

void put_raw_list(Writer& w, std::span<const Bytes> items) {
  w.array(items.size());
  for (const Bytes& b : items) w.raw(b);
}

}  // namespace

Bytes encode_member(const MemberEntry& m) {
  Writer w;
  put_member(w, m);
  return w.take();
}

Bytes encode_member_state(const MemberStateEntry& s) {
  Writer w;
  put_member_state(w, s);
  return w.take();
}

Bytes encode_mapping(const EndpointMapping& m) {
  Writer w;
  put_mapping(w, m);
  return w.take();
}

Bytes encode_revocation(const Revocation& r) {
  Writer w;
  put_revocation(w, r);
  return w.take();
}

Bytes encode_update(const Update& u) {
  Writer w;
  put_update(w, u);
  return w.take();
}

namespace {

// Decodes a single stand-alone piece by wrapping it as the only element of an array
// reader: the document's root *is* the piece, so read it through a one-element view.
template <typename T, typename Fn>
Result<T> decode_piece(ByteSpan b, const codec::Limits& limits, Fn get) {
  // Prefix a 1-element array header (0x91) so the piece reads like a field.
  Bytes wrapped;
  wrapped.reserve(b.size() + 1);
  wrapped.push_back(0x91);
  wrapped.insert(wrapped.end(), b.begin(), b.end());
  auto doc = codec::Document::decode(wrapped, limits);
  if (!doc.ok()) return doc.error();
  ArrayReader r = doc->root(1);
  T v = get(r);
  if (!doc->ok()) return make_error("codec.malformed", "bad stored value");
  return v;
}

}  // namespace

Result<MemberEntry> decode_member(ByteSpan b, const codec::Limits& limits) {
  return decode_piece<MemberEntry>(b, limits, [](ArrayReader& r) { return get_member(r); });
}

Result<EndpointMapping> decode_mapping(ByteSpan b, const codec::Limits& limits) {
  return decode_piece<EndpointMapping>(b, limits, [](ArrayReader& r) { return get_mapping(r); });
}

Result<Revocation> decode_revocation(ByteSpan b, const codec::Limits& limits) {
  return decode_piece<Revocation>(b, limits, [](ArrayReader& r) { return get_revocation(r); });
}

Bytes encode_join_request(const JoinRequest& m) {
  Writer w = header(MsgType::join_request, m.proof ? 3 : 2);
  w.u64(m.incarnation);
  put_record(w, m.record);
  if (m.proof) w.bin(*m.proof);
  return w.take();
}

Bytes encode_join_refuse(const JoinRefuse& m) {
  Writer w = header(MsgType::join_refuse, 1);
  w.str(m.reason.substr(0, kReasonMax));
  return w.take();
}

Bytes encode_ping_req(const PingReq& m) {
  // want_nack = false is written as the old two-field form: same meaning, and a
  // node predating issue 3 reads either form.
  Writer w = header(MsgType::ping_req, m.want_nack ? 3 : 2);
  w.u64(m.seq);
  w.bin(m.target);
  if (m.want_nack) w.boolean(true);
  return w.take();
}

Bytes encode_nack(const Nack& m) {
  Writer w = header(MsgType::nack, 1);
  w.u64(m.seq);
  return w.take();
}

Bytes encode_sync_request(const SyncRequest& m) {
  // states_ok rides only with buckets: a push answers a request with buckets.
  const bool buckets = !m.member_buckets.empty();
  const bool states_ok = buckets && m.states_ok;
  Writer w = header(MsgType::sync_request,
                    states_ok ? 6 : buckets ? 5 : m.revocations_digest ? 4 : 3);
  w.boolean(m.want_reply);
  w.u64(m.members_digest);
  w.array(m.vni_digests.size());
  for (const auto& [vni, d] : m.vni_digests) {
    w.array(2);
    w.u64(vni);
    w.u64(d);
  }
  if (m.revocations_digest || buckets) w.u64(m.revocations_digest.value_or(0));
  if (buckets) {
    w.array(m.member_buckets.size());
    for (std::uint64_t b : m.member_buckets) w.u64(b);
  }
  if (states_ok) w.boolean(true);
  return w.take();
}

Bytes encode_leave(const Leave& m) {
  Writer w = header(MsgType::leave, m.proof ? 2 : 1);
  w.u64(m.incarnation);
  if (m.proof) w.bin(*m.proof);
  return w.take();
}

Bytes encode_ping(std::uint64_t seq, std::span<const Bytes> updates) {
  Writer w = header(MsgType::ping, 2);
  w.u64(seq);
  put_raw_list(w, updates);
  return w.take();
}

Bytes encode_ack(std::uint64_t seq, std::span<const Bytes> updates) {
  Writer w = header(MsgType::ack, 2);
  w.u64(seq);
  put_raw_list(w, updates);
  return w.take();
}

Bytes encode_gossip(std::span<const Bytes> updates) {
  Writer w = header(MsgType::gossip, 1);
  put_raw_list(w, updates);
  return w.take();
}

Bytes encode_join_accept(std::span<const Bytes> members, std::span<const Bytes> mappings,
                         std::span<const Bytes> revocations) {
  Writer w = header(MsgType::join_accept, 3);
  put_raw_list(w, members);
  put_raw_list(w, mappings);
  put_raw_list(w, revocations);
  return w.take();
}

Bytes encode_push(std::span<const Bytes> members, std::span<const Bytes> mappings,
                  bool want_locals, std::span<const Bytes> revocations,
                  std::span<const Bytes> states) {
  Writer w = header(MsgType::push, states.empty() ? 4 : 5);
  put_raw_list(w, members);
  put_raw_list(w, mappings);
  w.boolean(want_locals);
  put_raw_list(w, revocations);
  if (!states.empty()) put_raw_list(w, states);
  return w.take();
}

Bytes encode_record_request(const RecordRequest& m) {
  Writer w = header(MsgType::record_request, 1);
  w.array(m.nodes.size());
  for (const NodeId& id : m.nodes) w.bin(id);
  return w.take();
}

Bytes encode_map_register(std::span<const Bytes> mappings) {
  Writer w = header(MsgType::map_register, 1);
  put_raw_list(w, mappings);
  return w.take();
}

Bytes encode_map_request(const MapRequest& m) {
  Writer w = header(MsgType::map_request, 2);
  w.u64(m.nonce);
  put_key(w, m.key);
  return w.take();
}

Bytes encode_map_reply(std::uint64_t nonce, const LookupKey& key, std::span<const Bytes> mappings,
                       std::uint64_t ttl_ms) {
  Writer w = header(MsgType::map_reply, 4);
  w.u64(nonce);
  put_key(w, key);
  put_raw_list(w, mappings);
  w.u64(ttl_ms);
  return w.take();
}

Bytes encode_map_notify(std::span<const Bytes> mappings) {
  Writer w = header(MsgType::map_notify, 1);
  put_raw_list(w, mappings);
  return w.take();
}

Result<Message> decode_message(ByteSpan b, const codec::Limits& limits) {
  auto doc = codec::Document::decode(b, limits);
  if (!doc.ok()) return doc.error();
  ArrayReader r = doc->root(64);
  std::uint64_t version = r.u64();
  std::uint64_t type = r.u64();
  if (!r.ok() || version != kMessageVersion) {
    return make_error("codec.malformed", "unknown message version");
  }
  Message msg;
  switch (static_cast<MsgType>(type)) {
    case MsgType::join_request: {
      JoinRequest m;
      m.incarnation = r.u64();
      m.record = get_record(r);
      if (r.remaining() > 0) m.proof = r.fixed<64>();
      msg = std::move(m);
      break;
    }
    case MsgType::join_accept: {
      JoinAccept m;
      ArrayReader mem = r.array(limits.array_len_max);
      while (mem.ok() && mem.remaining() > 0) m.members.push_back(get_member(mem));
      ArrayReader map = r.array(limits.array_len_max);
      while (map.ok() && map.remaining() > 0) m.mappings.push_back(get_mapping(map));
      m.revocations = get_revocations(r, limits);
      msg = std::move(m);
      break;
    }
    case MsgType::join_refuse: msg = JoinRefuse{r.str(kReasonMax)}; break;
    case MsgType::ping: {
      Ping m;
      m.seq = r.u64();
      m.updates = get_updates(r);
      msg = std::move(m);
      break;
    }
    case MsgType::ack: {
      Ack m;
      m.seq = r.u64();
      m.updates = get_updates(r);
      msg = std::move(m);
      break;
    }
    case MsgType::ping_req: {
      PingReq m;
      m.seq = r.u64();
      m.target = r.fixed<32>();
      if (r.remaining() > 0) m.want_nack = r.boolean();
      msg = m;
      break;
    }
    case MsgType::gossip: msg = Gossip{get_updates(r)}; break;
    case MsgType::sync_request: {
      SyncRequest m;
      m.want_reply = r.boolean();
      m.members_digest = r.u64();
      ArrayReader d = r.array(kVniDigestsMax);
      while (d.ok() && d.remaining() > 0) {
        ArrayReader e = d.array(4);
        auto vni = static_cast<std::uint32_t>(e.u64_max(crypto::kVniMax));
        m.vni_digests.emplace_back(vni, e.u64());
      }
      if (r.remaining() > 0) m.revocations_digest = r.u64();
      if (r.remaining() > 0) {
        ArrayReader b = r.array(kMemberBuckets);
        if (b.size() != kMemberBuckets) b.fail();
        while (b.ok() && b.remaining() > 0) m.member_buckets.push_back(b.u64());
      }
      if (r.remaining() > 0) m.states_ok = r.boolean();
      msg = std::move(m);
      break;
    }
    case MsgType::push: {
      Push m;
      ArrayReader mem = r.array(limits.array_len_max);
      while (mem.ok() && mem.remaining() > 0) m.members.push_back(get_member(mem));
      ArrayReader map = r.array(limits.array_len_max);
      while (map.ok() && map.remaining() > 0) m.mappings.push_back(get_mapping(map));
      m.want_locals = r.boolean();
      m.revocations = get_revocations(r, limits);
      if (r.remaining() > 0) {
        ArrayReader st = r.array(limits.array_len_max);
        while (st.ok() && st.remaining() > 0) m.states.push_back(get_member_state(st));
      }
      msg = std::move(m);
      break;
    }
    case MsgType::leave: {
      Leave m{r.u64(), std::nullopt};
      if (r.remaining() > 0) m.proof = r.fixed<64>();
      msg = m;
      break;
    }
    case MsgType::nack: msg = Nack{r.u64()}; break;
    case MsgType::map_register: msg = MapRegister{get_mappings(r, limits)}; break;
    case MsgType::map_request: {
      MapRequest m;
      m.nonce = r.u64();
      m.key = get_key(r);
      msg = m;
      break;
    }
    case MsgType::map_reply: {
      MapReply m;
      m.nonce = r.u64();
      m.key = get_key(r);
      m.mappings = get_mappings(r, limits);
      m.ttl_ms = r.u64();
      msg = std::move(m);
      break;
    }
    case MsgType::map_notify: msg = MapNotify{get_mappings(r, limits)}; break;
    case MsgType::record_request: {
      RecordRequest m;
      ArrayReader ids = r.array(kRecordRequestMax);
      while (ids.ok() && ids.remaining() > 0) m.nodes.push_back(ids.fixed<32>());
      msg = std::move(m);
      break;
    }
    default: return make_error("codec.malformed", "unknown message type");
  }
  if (!doc->ok()) return make_error("codec.malformed", "message does not match its schema");
  return msg;
}

}  // namespace meshd::mesh
