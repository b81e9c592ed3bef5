// The one wrapper around msgpack-cxx (STYLE habit 3). msgpack-cxx throws on bad
// input; this module bounds the input (bytes, array lengths, string/binary lengths,
// nesting depth), catches everything msgpack throws and hands out a non-throwing
// cursor. Nothing else in mesh/ catches exceptions or includes msgpack.
//
// Control messages use arrays only (no maps, no ext, no floats): positional fields,
// so a decoder checks types and counts instead of looking up keys.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "crypto/bytes.hpp"
#include "crypto/result.hpp"

namespace meshd::mesh::codec {

struct Limits {
  std::size_t message_bytes_max = 60000;
  std::size_t array_len_max = 16384;  // any one array
  std::size_t str_len_max = 256;      // reasons, names
  std::size_t depth_max = 8;          // nesting of arrays
};

// Builds one msgpack value. Appends to an internal buffer; never fails except on
// allocation failure (fatal, like everywhere else).
class Writer {
 public:
  void array(std::size_t n);
  void u64(std::uint64_t v);
  void boolean(bool v);
  void bin(ByteSpan b);
  template <std::size_t N>
  void bin(const std::array<std::uint8_t, N>& a) { bin(ByteSpan(a)); }
  void str(std::string_view s);
  // Appends an already encoded msgpack value (pre-packed gossip updates).
  void raw(ByteSpan encoded) { buf_.insert(buf_.end(), encoded.begin(), encoded.end()); }
  std::size_t size() const { return buf_.size(); }
  const Bytes& bytes() const { return buf_; }
  Bytes take() { return std::move(buf_); }

 private:
  Bytes buf_;
};

class Document;

// Cursor over one decoded array. Every getter consumes the next element; a type
// mismatch, a bound violation or reading past the end marks the whole document as
// failed (ok() turns false everywhere) and returns a zero value, so decoders read
// straight through and check ok() once at the end.
class ArrayReader {
 public:
  std::size_t size() const { return size_; }
  std::size_t remaining() const { return size_ - pos_; }
  bool ok() const { return !*failed_; }
  void fail() { *failed_ = true; }

  std::uint64_t u64();
  std::uint64_t u64_max(std::uint64_t max);  // fails if above max
  bool boolean();
  ByteSpan bin(std::size_t max_len);
  template <std::size_t N>
  std::array<std::uint8_t, N> fixed() {
    std::array<std::uint8_t, N> a{};
    ByteSpan b = bin(N);
    if (ok() && b.size() == N) {
      std::memcpy(a.data(), b.data(), N);
    } else {
      fail();
    }
    return a;
  }
  std::string str(std::size_t max_len);
  // The encoded bytes are not kept; this returns a cursor over a nested array whose
  // length must be within [0, max_len].
  ArrayReader array(std::size_t max_len);
  void skip();  // ignores one element (newer minor versions may append fields)

 private:
  friend class Document;
  ArrayReader(const void* items, std::size_t size, bool* failed)
      : items_(items), size_(size), failed_(failed) {}
  const void* next();  // msgpack::object*, or nullptr (and failed) past the end

  const void* items_ = nullptr;  // msgpack::object[size_]
  std::size_t size_ = 0;
  std::size_t pos_ = 0;
  bool* failed_;
};

// A decoded message. Owns the msgpack zone; readers borrow from it.
class Document {
 public:
  // Errors: "codec.too_big" (more than message_bytes_max), "codec.malformed" (not
  // msgpack, truncated, trailing bytes, a bound exceeded, a map/ext/float anywhere).
  static Result<Document> decode(ByteSpan bytes, const Limits& limits);
  Document(Document&&) noexcept;
  Document& operator=(Document&&) noexcept;
  ~Document();

  // The top-level value as an array (fails the document if it is not one).
  ArrayReader root(std::size_t max_len);
  bool ok() const { return !*failed_; }

 private:
  struct Impl;
  explicit Document(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<bool> failed_;  // shared by all readers; stable address across moves
};

}  // namespace meshd::mesh::codec
