#include "crypto/handshake_wire.hpp"

#include <sodium.h>

#include <algorithm>

#include "crypto/wire.hpp"

namespace meshd::crypto {

namespace {

constexpr std::string_view kMac1Label = "mac1----";

std::array<std::uint8_t, kMac1Len> mac1(ByteSpan data, const Mac1Key& key) {
  std::array<std::uint8_t, kMac1Len> out{};
  crypto_generichash(out.data(), out.size(), data.data(), data.size(), key.data(), key.size());
  return out;
}

bool mac1_ok(ByteSpan d, const Mac1Key& key) {
  auto want = mac1(d.first(d.size() - kMac1Len), key);
  return sodium_memcmp(want.data(), d.data() + d.size() - kMac1Len, kMac1Len) == 0;
}

void append_mac1(ByteWriter& w, const Mac1Key& key) { w.raw(mac1(w.bytes(), key)); }

Error format_error(const char* what) { return make_error("handshake.format", what); }

bool header_ok(ByteSpan d, wire::PacketType t) {
  return d.size() >= 4 && d[0] == static_cast<std::uint8_t>(t) && d[1] == 0 && d[2] == 0 && d[3] == 0;
}

}  // namespace

Mac1Key mac1_key_for(const PublicKey& receiver_static) {
  Mac1Key k{};
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, k.size());
  crypto_generichash_update(&st, reinterpret_cast<const std::uint8_t*>(kMac1Label.data()), kMac1Label.size());
  crypto_generichash_update(&st, receiver_static.data(), receiver_static.size());
  crypto_generichash_final(&st, k.data(), k.size());
  return k;
}

Result<Bytes> build_init(std::uint32_t sender_index, ByteSpan noise_msg, std::size_t pad_to, const Mac1Key& key) {
  if (noise_msg.size() < kNoiseInitFixedLen + kAeadTagLen) return format_error("noise message too short");
  std::size_t payload_len = noise_msg.size() - kNoiseInitFixedLen;
  std::size_t natural = kInitFixedLen + payload_len + kMac1Len;
  if (payload_len > 0xFFFF || natural > kHandshakeMaxLen) {
    return make_error("handshake.too_large", "certificate chain too large for a handshake");
  }
  std::size_t total = std::clamp(pad_to, natural, kHandshakeMaxLen);
  ByteWriter w;
  w.u8(static_cast<std::uint8_t>(wire::PacketType::handshake_init));
  w.u8(0);
  w.u16(0);
  w.u32(sender_index);
  w.raw(noise_msg.first(kNoiseInitFixedLen));
  w.blob(noise_msg.subspan(kNoiseInitFixedLen));
  Bytes pad(total - natural, 0);
  w.raw(pad);
  append_mac1(w, key);
  return w.take();
}

Result<Bytes> build_resp(std::uint32_t sender_index, std::uint32_t receiver_index, ByteSpan noise_msg,
                         const Mac1Key& key) {
  if (noise_msg.size() < kNoiseRespFixedLen + kAeadTagLen) return format_error("noise message too short");
  std::size_t payload_len = noise_msg.size() - kNoiseRespFixedLen;
  if (payload_len > 0xFFFF || kRespFixedLen + payload_len + kMac1Len > kHandshakeMaxLen) {
    return make_error("handshake.too_large", "certificate chain too large for a handshake");
  }
  ByteWriter w;
  w.u8(static_cast<std::uint8_t>(wire::PacketType::handshake_resp));
  w.u8(0);
  w.u16(0);
  w.u32(sender_index);
  w.u32(receiver_index);
  w.raw(noise_msg.first(kNoiseRespFixedLen));
  w.blob(noise_msg.subspan(kNoiseRespFixedLen));
  append_mac1(w, key);
  return w.take();
}

Result<ParsedInit> parse_init(ByteSpan d, const Mac1Key& key) {
  if (!header_ok(d, wire::PacketType::handshake_init) || d.size() < kInitMinLen || d.size() > kHandshakeMaxLen) {
    return format_error("bad handshake init header or length");
  }
  if (!mac1_ok(d, key)) return make_error("handshake.mac", "handshake init mac1 mismatch");
  ByteReader r(d.first(d.size() - kMac1Len));
  r.raw(4);
  ParsedInit out;
  out.sender_index = r.u32();
  ByteSpan fixed = r.raw(kNoiseInitFixedLen);
  ByteSpan payload = r.blob(0xFFFF);
  if (!r.ok() || payload.size() < kAeadTagLen) return format_error("bad handshake init payload length");
  ByteSpan pad = r.raw(r.remaining());
  if (std::any_of(pad.begin(), pad.end(), [](std::uint8_t b) { return b != 0; })) {
    return format_error("nonzero handshake init padding");
  }
  out.noise_msg.assign(fixed.begin(), fixed.end());
  out.noise_msg.insert(out.noise_msg.end(), payload.begin(), payload.end());
  return out;
}

Result<ParsedResp> parse_resp(ByteSpan d, const Mac1Key& key) {
  if (!header_ok(d, wire::PacketType::handshake_resp) || d.size() < kRespMinLen || d.size() > kHandshakeMaxLen) {
    return format_error("bad handshake response header or length");
  }
  if (!mac1_ok(d, key)) return make_error("handshake.mac", "handshake response mac1 mismatch");
  ByteReader r(d.first(d.size() - kMac1Len));
  r.raw(4);
  ParsedResp out;
  out.sender_index = r.u32();
  out.receiver_index = r.u32();
  ByteSpan fixed = r.raw(kNoiseRespFixedLen);
  ByteSpan payload = r.blob(0xFFFF);
  if (!r.at_end() || payload.size() < kAeadTagLen) return format_error("bad handshake response payload length");
  out.noise_msg.assign(fixed.begin(), fixed.end());
  out.noise_msg.insert(out.noise_msg.end(), payload.begin(), payload.end());
  return out;
}

Bytes encode_init_payload(std::uint16_t cipher_offer, ByteSpan chain) {
  ByteWriter w;
  w.u8(static_cast<std::uint8_t>(kInitParamsLen));
  w.u16(cipher_offer);
  w.raw(chain);
  return w.take();
}

Bytes encode_resp_payload(std::uint8_t cipher, ByteSpan chain) {
  ByteWriter w;
  w.u8(static_cast<std::uint8_t>(kRespParamsLen));
  w.u8(cipher);
  w.raw(chain);
  return w.take();
}

Result<InitPayload> decode_init_payload(ByteSpan payload) {
  ByteReader r(payload);
  std::uint8_t params_len = r.u8();
  if (!r.ok() || params_len < kInitParamsLen)
    return format_error("handshake init parameters too short");
  ByteReader p(r.raw(params_len));
  if (!r.ok()) return format_error("truncated handshake init parameters");
  InitPayload out;
  out.cipher_offer = p.u16();
  out.chain = payload.subspan(1 + params_len);
  return out;
}

Result<RespPayload> decode_resp_payload(ByteSpan payload) {
  ByteReader r(payload);
  std::uint8_t params_len = r.u8();
  if (!r.ok() || params_len < kRespParamsLen)
    return format_error("handshake response parameters too short");
  ByteReader p(r.raw(params_len));
  if (!r.ok()) return format_error("truncated handshake response parameters");
  RespPayload out;
  out.cipher = p.u8();
  out.chain = payload.subspan(1 + params_len);
  return out;
}

}  // namespace meshd::crypto
