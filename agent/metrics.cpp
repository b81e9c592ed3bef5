// Counters of every subsystem under one flat namespace, for `status --json`.
#include "agent/daemon.hpp"

namespace meshd::agent {

nlohmann::json Daemon::counters_json() const {
  nlohmann::json c = nlohmann::json::object();
  // The workers carry most frames; the control thread the rest (slow path).
  const WorkerCounters w = dataplane_ ? dataplane_->counters() : WorkerCounters{};
  const auto& t = tunnel_->counters();
  c["tunnel_rx_datagrams"] = t.rx_datagrams;
  c["tunnel_tx_datagrams"] = t.tx_datagrams;
  c["tunnel_rx_bytes"] = t.rx_bytes + w.tunnel_rx_bytes;
  c["tunnel_tx_bytes"] = t.tx_bytes + w.tunnel_tx_bytes;
  c["tunnel_handshakes_completed"] = t.handshakes_completed;
  c["tunnel_drop_malformed"] = t.drop_malformed;
  c["tunnel_drop_bad_mac"] = t.drop_bad_mac;
  c["tunnel_drop_handshake_failed"] = t.drop_handshake_failed;
  c["tunnel_drop_bad_cert"] = t.drop_bad_cert;
  c["tunnel_drop_unknown_index"] = t.drop_unknown_index;
  c["tunnel_drop_decrypt"] = t.drop_decrypt + w.drop_decrypt;
  c["tunnel_drop_replay"] = t.drop_replay + w.drop_replay;
  c["tunnel_drop_rate_limited"] = t.drop_rate_limited;
  c["tunnel_drop_queue_full"] = t.drop_queue_full;
  c["tunnel_drop_peers_full"] = t.drop_peers_full;
  c["tunnel_drop_outbox_full"] = t.drop_outbox_full;
  c["tunnel_drop_handshake_timeout"] = t.drop_handshake_timeout;
  c["tunnel_drop_no_cipher"] = t.drop_no_cipher;

  const auto& m = mesh_->counters();
  c["mesh_rx_messages"] = m.rx_messages;
  c["mesh_tx_messages"] = m.tx_messages;
  c["mesh_drop_malformed"] = m.drop_malformed;
  c["mesh_drop_bad_signature"] = m.drop_bad_signature;
  c["mesh_drop_scope"] = m.drop_scope;
  c["mesh_drop_stale"] = m.drop_stale;
  c["mesh_drop_table_full"] = m.drop_table_full;
  c["mesh_probes_sent"] = m.probes_sent;
  c["mesh_probe_second_waves"] = m.probe_second_waves;
  c["mesh_probe_failures"] = m.probe_failures;
  c["mesh_suspicions"] = m.suspicions;
  c["mesh_drop_unserved"] = m.drop_unserved;
  c["mesh_drop_unknown_owner"] = m.drop_unknown_owner;
  c["mesh_drop_refused"] = m.drop_refused;
  c["mesh_drop_queue_full"] = m.drop_queue_full;
  c["mesh_refutations"] = m.refutations;
  c["mesh_joins_refused"] = m.joins_refused;
  c["mesh_drop_revoked"] = m.drop_revoked;
  c["mesh_nacks_sent"] = m.nacks_sent;
  c["mesh_nacks_received"] = m.nacks_received;
  c["mesh_nacks_missed"] = m.nacks_missed;
  c["mesh_suspicion_confirmations"] = m.suspicion_confirmations;
  c["mesh_local_health"] = m.local_health;
  c["mesh_local_health_max_seen"] = m.local_health_max_seen;
  c["mesh_map_requests"] = m.map_requests;
  c["mesh_map_replies"] = m.map_replies;
  c["mesh_map_negative"] = m.map_negative;
  c["mesh_map_timeouts"] = m.map_timeouts;
  c["mesh_map_requests_served"] = m.map_requests_served;
  c["mesh_map_registers_sent"] = m.map_registers_sent;
  c["mesh_map_notifies_sent"] = m.map_notifies_sent;
  c["mesh_map_handoffs"] = m.map_handoffs;
  c["mesh_map_duplicates"] = m.map_duplicates;
  c["mesh_map_held"] = mesh_->held_count();
  c["mesh_map_cached"] = m.map_cached;
  c["mesh_records_requested"] = m.records_requested;
  c["mesh_records_requests_served"] = m.records_requests_served;
  const auto& p = pending_.counters();
  c["map_lookups"] = counters_.map_lookups;
  c["map_lookup_floods"] = counters_.map_lookup_floods;
  c["map_rx_src_unresolved"] = counters_.rx_src_unresolved;
  c["map_frames_waited"] = p.queued;
  c["map_frames_released"] = p.released;
  c["map_frames_given_up"] = p.given_up;
  c["map_frames_drop_full"] = p.drop_full;
  c["map_frames_drop_aged"] = p.drop_aged;

  dp::ForwarderCounters f = forwarder_.counters();
  f += w.fwd;
  c["fwd_tx_unicast"] = f.tx_unicast;
  c["fwd_tx_flood"] = f.tx_flood;
  c["fwd_arp_proxied"] = f.arp_proxied;
  c["fwd_nd_proxied"] = f.nd_proxied;
  c["fwd_route_proxied"] = f.route_proxied;
  c["fwd_drop_flood_limited"] = f.drop_flood_limited;
  c["fwd_rx_delivered"] = f.rx_delivered;
  c["fwd_drop_malformed"] = f.drop_malformed;
  c["fwd_drop_src_not_local"] = f.drop_src_not_local;
  c["fwd_drop_vni_not_allowed"] = f.drop_vni_not_allowed;
  c["fwd_drop_src_not_owner"] = f.drop_src_not_owner;
  c["fwd_drop_vni_not_served"] = f.drop_vni_not_served;
  c["fwd_drop_no_route"] = f.drop_no_route;
  // Not rejected input: unicast to a local endpoint that the bridge already switched
  // (it floods frames for MACs it has not learned yet to the TAP too).
  c["fwd_dst_local_skipped"] = f.drop_dst_local;

  c["udp_rx_datagrams"] = w.udp_rx_datagrams;
  c["udp_rx_gro_batches"] = w.udp_rx_gro_batches;
  c["udp_rx_truncated"] = w.udp_rx_truncated;
  c["udp_rx_errors"] = w.udp_rx_errors;
  c["udp_tx_datagrams"] = w.udp_tx_datagrams;
  c["udp_tx_gso_sends"] = w.udp_tx_gso_sends;
  c["udp_tx_waits"] = w.udp_tx_waits;
  c["udp_tx_errors"] = udp_.tx_errors() + w.udp_tx_errors;
  c["tap_rx_frames"] = w.tap_rx_frames;
  c["tap_rx_super_frames"] = w.tap_rx_super;
  c["tap_segments"] = w.tap_segments;
  c["tap_drop_gso"] = w.tap_drop_gso;
  c["tap_tx_frames"] = counters_.tap_tx_frames + w.tap_tx_frames;
  c["tap_tx_super_frames"] = w.tap_tx_super;
  c["tap_coalesced_segments"] = w.tap_coalesced;
  c["tap_write_errors"] = counters_.tap_write_errors + w.tap_write_errors;
  c["dp_slow_path"] = w.slow_path;
  c["dp_slow_drop_full"] = w.slow_drop_full;
  c["dp_icmp_too_big"] = w.icmp_too_big;
  c["dp_drop_oversize"] = w.drop_oversize;
  c["drop_inner_header"] = counters_.drop_inner_header + w.drop_inner_header;
  c["drop_no_chain"] = counters_.drop_no_chain;
  c["drop_no_session"] = counters_.drop_no_session;
  c["mesh_tx_no_peer"] = counters_.mesh_tx_no_peer;

  c["control_requests"] = control_ ? control_->requests() : 0;
  c["control_bad_request"] = control_ ? control_->bad_requests() : 0;
  c["control_rejected_clients"] = control_ ? control_->rejected_clients() : 0;
  c["store_write_errors"] = store_ ? store_->write_errors() : 0;
  return c;
}

}  // namespace meshd::agent
