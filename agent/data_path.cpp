// The tenant side of the data path: frames from the per-VNI TAPs, forwarding
// decisions, sealing in place into preallocated buffers (no allocation per frame).
#include <spdlog/spdlog.h>

#include <cstring>

#include "agent/daemon.hpp"
#include "agent/inner_header.hpp"

namespace meshd::agent {

struct Daemon::TapWatch {
  uv_poll_t poll{};
  Daemon* daemon = nullptr;
  std::uint32_t vni = 0;
};

namespace {
constexpr std::size_t kFrameOffset = wire::kTransportHeaderLen + wire::kInnerHeaderLen;
}  // namespace

void Daemon::watch_tap(std::uint32_t vni) {
  if (stopping_ || tap_watches_.count(vni)) return;
  const dp::TapDevice* tap = devices_->tap(vni);
  if (!tap) return;
  auto* w = new TapWatch{};
  w->daemon = this;
  w->vni = vni;
  uv_poll_init(&loop_, &w->poll, tap->fd());
  w->poll.data = w;
  uv_poll_start(&w->poll, UV_READABLE, [](uv_poll_t* h, int status, int) {
    auto* tw = static_cast<TapWatch*>(h->data);
    if (status == 0) tw->daemon->on_tap_readable(tw->vni);
  });
  tap_watches_.emplace(vni, w);
}

void Daemon::unwatch_tap(std::uint32_t vni) {
  auto it = tap_watches_.find(vni);
  if (it == tap_watches_.end()) return;
  // Close the poll before the TAP fd goes away (remove_vni / teardown).
  uv_close(reinterpret_cast<uv_handle_t*>(&it->second->poll),
           [](uv_handle_t* h) { delete static_cast<TapWatch*>(h->data); });
  tap_watches_.erase(it);
}

void Daemon::send_frame(std::uint64_t now, const crypto::NodeId& to, std::uint32_t vni,
                        std::span<std::uint8_t> buf, std::size_t len) {
  encode_inner_header(buf.subspan(wire::kTransportHeaderLen, wire::kInnerHeaderLen), InnerHeader{vni, 0});
  Locator out_to;
  const std::size_t plain_len = wire::kInnerHeaderLen + len;
  const std::size_t n = tunnel_->seal_in_place(now, to, buf, plain_len, out_to);
  if (n > 0) {
    udp_.send_to(out_to, buf.first(n));
    return;
  }
  // No session yet: the tunnel queues (bounded) and starts a handshake.
  ensure_peer(to);
  if (!tunnel_->send(now, to, ByteSpan(buf.data() + wire::kTransportHeaderLen, plain_len))) {
    ++counters_.drop_no_session;
  }
}

void Daemon::on_tap_readable(std::uint32_t vni) {
  const dp::TapDevice* tap = devices_->tap(vni);
  if (!tap || stopping_) return;
  const std::uint64_t now = now_ms();
  const std::span<std::uint8_t> buf(tap_buf_);
  const auto frame_area = buf.subspan(kFrameOffset, kFrameMax);
  for (std::size_t i = 0; i < kTapBurstMax; ++i) {
    const long n = tap->read(frame_area);
    if (n <= 0) break;
    ++counters_.tap_rx_frames;
    const auto len = static_cast<std::size_t>(n);
    const ByteSpan frame(frame_area.data(), len);
    const auto d = forwarder_.on_tap_frame(vni, frame, reply_buf_);
    switch (d.kind) {
      case dp::TapDecision::Kind::unicast:
        send_frame(now, d.to, vni, buf, len);
        break;
      case dp::TapDecision::Kind::flood:
        if (!d.flood) break;
        // Sealing is in place, so each copy gets its own buffer pass.
        for (const auto& node : *d.flood) {
          std::memcpy(flood_buf_.data() + kFrameOffset, frame.data(), len);
          send_frame(now, node, vni, flood_buf_, len);
        }
        break;
      case dp::TapDecision::Kind::reply_local:
        if (tap->write(std::span<const std::uint8_t>(reply_buf_.data(), d.reply_len)) < 0) {
          ++counters_.tap_write_errors;
        } else {
          ++counters_.tap_tx_frames;
        }
        break;
      case dp::TapDecision::Kind::drop:
        break;
    }
  }
  // Handshakes or queued sends may have been started.
  pump(now);
}

}  // namespace meshd::agent
