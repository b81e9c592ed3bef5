// Bounded byte reader/writer for the fixed binary formats (certificates, tokens,
// packet headers). The reader never reads past its span: every getter reports
// failure through ok() instead of touching memory it does not own.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace meshd {

using Bytes = std::vector<std::uint8_t>;
using ByteSpan = std::span<const std::uint8_t>;

inline ByteSpan as_u8(std::span<const std::byte> s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::span<const std::byte> as_bytes_span(ByteSpan s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

class ByteWriter {
 public:
  void u8(std::uint8_t v) { buf_.push_back(v); }
  void u16(std::uint16_t v) { put_le(v, 2); }
  void u24(std::uint32_t v) { put_le(v, 3); }
  void u32(std::uint32_t v) { put_le(v, 4); }
  void u64(std::uint64_t v) { put_le(v, 8); }
  void raw(ByteSpan s) { buf_.insert(buf_.end(), s.begin(), s.end()); }
  template <std::size_t N>
  void raw(const std::array<std::uint8_t, N>& a) { raw(ByteSpan(a)); }
  // Length-prefixed (u16) byte string.
  void blob(ByteSpan s) { u16(static_cast<std::uint16_t>(s.size())); raw(s); }
  void str(std::string_view s) {
    blob(ByteSpan(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
  }
  const Bytes& bytes() const { return buf_; }
  Bytes take() { return std::move(buf_); }

 private:
  void put_le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) buf_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  Bytes buf_;
};

class ByteReader {
 public:
  explicit ByteReader(ByteSpan s) : s_(s) {}
  bool ok() const { return ok_; }
  std::size_t remaining() const { return ok_ ? s_.size() - pos_ : 0; }
  bool at_end() const { return ok_ && pos_ == s_.size(); }

  std::uint8_t u8() { return static_cast<std::uint8_t>(get_le(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(get_le(2)); }
  std::uint32_t u24() { return static_cast<std::uint32_t>(get_le(3)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(get_le(4)); }
  std::uint64_t u64() { return get_le(8); }
  ByteSpan raw(std::size_t n) {
    if (!need(n)) return {};
    ByteSpan out = s_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  template <std::size_t N>
  std::array<std::uint8_t, N> arr() {
    std::array<std::uint8_t, N> a{};
    ByteSpan r = raw(N);
    if (ok_) std::memcpy(a.data(), r.data(), N);
    return a;
  }
  ByteSpan blob(std::size_t max_len) {
    std::uint16_t n = u16();
    if (n > max_len) { ok_ = false; return {}; }
    return raw(n);
  }
  std::string str(std::size_t max_len) {
    ByteSpan b = blob(max_len);
    return ok_ ? std::string(reinterpret_cast<const char*>(b.data()), b.size()) : std::string();
  }

 private:
  bool need(std::size_t n) {
    if (!ok_ || s_.size() - pos_ < n) { ok_ = false; return false; }
    return true;
  }
  std::uint64_t get_le(int n) {
    if (!need(static_cast<std::size_t>(n))) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(s_[pos_ + i]) << (8 * i);
    pos_ += static_cast<std::size_t>(n);
    return v;
  }
  ByteSpan s_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

std::string to_hex(ByteSpan s);
// Returns false on odd length or a non-hex character.
bool from_hex(std::string_view hex, Bytes& out);

}  // namespace meshd
