#include "mesh/codec.hpp"

#include <exception>
#include <msgpack.hpp>

namespace meshd::mesh::codec {

namespace {

// msgpack::packer wants a stream with write(); this one appends to a Bytes.
struct Sink {
  Bytes* out;
  void write(const char* p, std::size_t n) {
    const auto* u = reinterpret_cast<const std::uint8_t*>(p);
    out->insert(out->end(), u, u + n);
  }
};

const msgpack::object* as_obj(const void* p) { return static_cast<const msgpack::object*>(p); }

}  // namespace

void Writer::array(std::size_t n) {
  Sink s{&buf_};
  msgpack::packer<Sink>(s).pack_array(static_cast<std::uint32_t>(n));
}

void Writer::u64(std::uint64_t v) {
  Sink s{&buf_};
  msgpack::packer<Sink>(s).pack_uint64(v);
}

void Writer::boolean(bool v) {
  Sink s{&buf_};
  msgpack::packer<Sink> pk(s);
  if (v) {
    pk.pack_true();
  } else {
    pk.pack_false();
  }
}

void Writer::bin(ByteSpan b) {
  Sink s{&buf_};
  msgpack::packer<Sink> pk(s);
  pk.pack_bin(static_cast<std::uint32_t>(b.size()));
  pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<std::uint32_t>(b.size()));
}

void Writer::str(std::string_view v) {
  Sink s{&buf_};
  msgpack::packer<Sink> pk(s);
  pk.pack_str(static_cast<std::uint32_t>(v.size()));
  pk.pack_str_body(v.data(), static_cast<std::uint32_t>(v.size()));
}

const void* ArrayReader::next() {
  if (*failed_ || pos_ >= size_) {
    *failed_ = true;
    return nullptr;
  }
  return as_obj(items_) + pos_++;
}

std::uint64_t ArrayReader::u64() {
  const auto* o = as_obj(next());
  if (o == nullptr) return 0;
  if (o->type != msgpack::type::POSITIVE_INTEGER) {
    fail();
    return 0;
  }
  return o->via.u64;
}

std::uint64_t ArrayReader::u64_max(std::uint64_t max) {
  std::uint64_t v = u64();
  if (v > max) {
    fail();
    return 0;
  }
  return v;
}

bool ArrayReader::boolean() {
  const auto* o = as_obj(next());
  if (o == nullptr) return false;
  if (o->type != msgpack::type::BOOLEAN) {
    fail();
    return false;
  }
  return o->via.boolean;
}

ByteSpan ArrayReader::bin(std::size_t max_len) {
  const auto* o = as_obj(next());
  if (o == nullptr) return {};
  if (o->type != msgpack::type::BIN || o->via.bin.size > max_len) {
    fail();
    return {};
  }
  return {reinterpret_cast<const std::uint8_t*>(o->via.bin.ptr), o->via.bin.size};
}

std::string ArrayReader::str(std::size_t max_len) {
  const auto* o = as_obj(next());
  if (o == nullptr) return {};
  if (o->type != msgpack::type::STR || o->via.str.size > max_len) {
    fail();
    return {};
  }
  return std::string(o->via.str.ptr, o->via.str.size);
}

ArrayReader ArrayReader::array(std::size_t max_len) {
  const auto* o = as_obj(next());
  if (o == nullptr || o->type != msgpack::type::ARRAY || o->via.array.size > max_len) {
    fail();
    return ArrayReader(nullptr, 0, failed_);
  }
  return ArrayReader(o->via.array.ptr, o->via.array.size, failed_);
}

void ArrayReader::skip() { (void)next(); }

struct Document::Impl {
  msgpack::object_handle handle;
};

Document::Document(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)), failed_(std::make_unique<bool>(false)) {}
Document::Document(Document&&) noexcept = default;
Document& Document::operator=(Document&&) noexcept = default;
Document::~Document() = default;

Result<Document> Document::decode(ByteSpan bytes, const Limits& limits) {
  if (bytes.size() > limits.message_bytes_max) {
    return make_error("codec.too_big", "control message larger than message_bytes_max");
  }
  if (bytes.empty()) return make_error("codec.malformed", "empty control message");
  // Maps and ext values are never part of a schema: a zero limit rejects them early.
  const msgpack::unpack_limit limit(limits.array_len_max, /*map=*/0,
                                    /*str=*/limits.str_len_max,
                                    /*bin=*/limits.message_bytes_max, /*ext=*/0,
                                    limits.depth_max);
  auto impl = std::make_unique<Impl>();
  std::size_t offset = 0;
  try {
    impl->handle = msgpack::unpack(reinterpret_cast<const char*>(bytes.data()), bytes.size(),
                                   offset, nullptr, nullptr, limit);
  } catch (const std::exception& e) {
    // msgpack reports truncation, bad type bytes and every limit by throwing; all of
    // them mean the same thing to the caller: drop the message.
    return make_error("codec.malformed", e.what());
  }
  if (offset != bytes.size()) return make_error("codec.malformed", "trailing bytes");
  return Document(std::move(impl));
}

ArrayReader Document::root(std::size_t max_len) {
  const msgpack::object& o = impl_->handle.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size > max_len) {
    *failed_ = true;
    return ArrayReader(nullptr, 0, failed_.get());
  }
  return ArrayReader(o.via.array.ptr, o.via.array.size, failed_.get());
}

}  // namespace meshd::mesh::codec
