#include "metrics/metrics.hpp"

#include <sstream>

namespace ctquota::metrics {

void HttpMetrics::observe(const std::string& route, int status, std::chrono::microseconds latency) {
    const double seconds = static_cast<double>(latency.count()) / 1e6;
    std::size_t i = 0;
    while (i < kBuckets.size() && seconds > kBuckets[i]) {
        ++i;
    }
    std::lock_guard lock(mu_);
    ++requests_[{route, status}];
    auto& l = latency_[route];
    ++l.buckets[i];
    l.sum_us += static_cast<std::uint64_t>(latency.count());
}

void HttpMetrics::render(std::ostream& out) const {
    std::lock_guard lock(mu_);
    out << "# HELP ctquota_http_requests_total HTTP requests by route and status code\n"
           "# TYPE ctquota_http_requests_total counter\n";
    for (const auto& [key, n] : requests_) {
        out << "ctquota_http_requests_total{route=\"" << key.first << "\",code=\"" << key.second
            << "\"} " << n << "\n";
    }
    out << "# HELP ctquota_http_request_seconds HTTP request latency by route\n"
           "# TYPE ctquota_http_request_seconds histogram\n";
    for (const auto& [route, l] : latency_) {
        std::uint64_t cumulative = 0;
        const std::string label = "route=\"" + route + "\"";
        for (std::size_t i = 0; i < kBuckets.size(); ++i) {
            cumulative += l.buckets[i];
            out << "ctquota_http_request_seconds_bucket{" << label << ",le=\"" << kBuckets[i]
                << "\"} " << cumulative << "\n";
        }
        cumulative += l.buckets[kBuckets.size()];
        out << "ctquota_http_request_seconds_bucket{" << label << ",le=\"+Inf\"} " << cumulative
            << "\n";
        out << "ctquota_http_request_seconds_sum{" << label << "} "
            << static_cast<double>(l.sum_us) / 1e6 << "\n";
        out << "ctquota_http_request_seconds_count{" << label << "} " << cumulative << "\n";
    }
}

namespace {

using Buckets = std::array<std::atomic<std::uint64_t>, Metrics::kFlushBuckets.size() + 1>;

void observe(Buckets& buckets, std::atomic<std::uint64_t>& sum_us, std::chrono::microseconds d) {
    const double seconds = static_cast<double>(d.count()) / 1e6;
    std::size_t i = 0;
    while (i < Metrics::kFlushBuckets.size() && seconds > Metrics::kFlushBuckets[i]) {
        ++i;
    }
    buckets[i].fetch_add(1, std::memory_order_relaxed);
    sum_us.fetch_add(static_cast<std::uint64_t>(d.count()), std::memory_order_relaxed);
}

void render_histogram(std::ostream& out, const std::string& name, const char* help,
                      const Buckets& buckets, const std::atomic<std::uint64_t>& sum_us) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < Metrics::kFlushBuckets.size(); ++i) {
        cumulative += buckets[i].load();
        out << name << "_bucket{le=\"" << Metrics::kFlushBuckets[i] << "\"} " << cumulative << "\n";
    }
    cumulative += buckets[Metrics::kFlushBuckets.size()].load();
    out << name << "_bucket{le=\"+Inf\"} " << cumulative << "\n";
    out << name << "_sum " << static_cast<double>(sum_us.load()) / 1e6 << "\n";
    out << name << "_count " << cumulative << "\n";
}

}  // namespace

void Metrics::render_drops(std::ostream& out) const {
    auto counter = [&out](const char* name, const char* help, std::uint64_t v) {
        out << "# HELP ctquota_" << name << " " << help << "\n# TYPE ctquota_" << name
            << " counter\nctquota_" << name << " " << v << "\n";
    };
    auto gauge = [&out](const char* name, const char* help, std::uint64_t v) {
        out << "# HELP ctquota_" << name << " " << help << "\n# TYPE ctquota_" << name
            << " gauge\nctquota_" << name << " " << v << "\n";
    };
    gauge("drop_attribution_active",
          "1 when the gateway's drops after conntrack are recorded per flow and not billed",
          drop_attribution.load() ? 1 : 0);
    counter("dropped_packets_total", "packets dropped after conntrack counted them, per flow",
            drop_packets.load());
    counter("dropped_bytes_total", "IP bytes dropped after conntrack counted them, per flow",
            drop_bytes.load());
    counter("drop_map_full_total", "drops the kernel map had no room for (billed)",
            drop_map_full.load());
    gauge("drop_map_flows", "flows with recorded drops held", drop_map_flows.load());
    counter("drop_read_errors_total", "failed reads or erasures of the kernel's drop map",
            drop_read_errors.load());
    counter("drop_late_bytes_total",
            "bytes dropped after their flow's DESTROY, within the grace its final credit waits "
            "(not billed)",
            drop_late_bytes.load());
    counter("drop_unapplied_bytes_total",
            "dropped bytes no flow's credit took (the flow ended before the drop): billed",
            drop_unapplied_bytes.load());
    counter("drop_vanished_flows_total",
            "flows whose recorded drops left the map before they were applied (map too small)",
            drop_vanished_flows.load());
}

void HttpConnectionMetrics::render(std::ostream& out) const {
    out << "# TYPE ctquota_http_connections_open gauge\nctquota_http_connections_open "
        << open.load() << "\n";
    const std::pair<const char*, const std::atomic<std::uint64_t>*> counters[] = {
        {"accepted", &accepted},           {"refused_per_address", &refused_address},
        {"refused_full", &refused_full},   {"evicted_idle", &evicted},
        {"timed_out", &timed_out},         {"refused_overload", &refused_overload},
        {"accept_errors", &accept_errors},
    };
    out << "# HELP ctquota_http_connections_total HTTP connections by outcome\n"
           "# TYPE ctquota_http_connections_total counter\n";
    for (const auto& [outcome, value] : counters) {
        out << "ctquota_http_connections_total{outcome=\"" << outcome << "\"} " << value->load()
            << "\n";
    }
}

void Metrics::observe_flush(std::chrono::microseconds d) {
    observe(flush_latency, flush_latency_us_sum, d);
}

void Metrics::observe_flush_to_kernel(std::chrono::microseconds d) {
    observe(kernel_latency, kernel_latency_us_sum, d);
}

std::string Metrics::render_prometheus() const {
    std::ostringstream out;
    auto counter = [&out](const char* name, const char* help, std::uint64_t v) {
        out << "# HELP ctquota_" << name << " " << help << "\n# TYPE ctquota_" << name
            << " counter\nctquota_" << name << " " << v << "\n";
    };
    counter("events_read_total", "ctnetlink DESTROY events read", events_read.load());
    counter("enobufs_total", "ENOBUFS on the event socket", enobufs.load());
    counter("resyncs_total", "full-dump resyncs after lost events", resyncs.load());
    counter("queue_overflows_total", "reader hand-offs dropped because the queue was full",
            queue_overflows.load());
    counter("flushes_in_doubt_total",
            "flushes whose COMMIT lost its answer and could not be resolved at once (held, "
            "never retried blindly)",
            flushes_in_doubt.load());
    counter("queue_full_waits_total",
            "event hand-offs that waited for room (reliable delivery: nothing dropped)",
            queue_full_waits.load());
    counter("dumps_total", "conntrack table dumps", dumps.load());
    counter("dumps_deferred_total",
            "periodic dumps that waited past the poll interval for DESTROY events to slow down",
            dumps_deferred.load());
    counter("flows_lost_total", "credited flows whose final counters were lost", flows_lost.load());
    counter("flows_lost_recovered_total",
            "flows declared lost whose DESTROY (or a dump) came later and credited only the rest",
            flows_lost_recovered.load());
    counter("unattributed_bytes_total", "bytes matching no subscriber", unattributed_bytes.load());
    counter("flushes_total", "successful database flushes", flushes.load());
    counter("db_errors_total", "database errors", db_errors.load());
    counter("policy_evaluations_total", "subscribers evaluated against their plan",
            policy_evaluations.load());
    counter("usage_notices_received_total",
            "other gateways' flush notices (their subscribers re-evaluated here)",
            usage_notices_received.load());
    counter("enforcement_changes_total", "state changes applied to the kernel",
            enforcement_changes.load());
    counter("enforcement_errors_total", "kernel changes that failed", enforcement_errors.load());
    counter("kernel_repairs_total",
            "rebuilds of the nftables table / HTB tree after they were flushed or deleted",
            kernel_repairs.load());
    counter("leases_granted_total", "quota slices leased to this gateway (none was live)",
            leases_granted.load());
    counter("leases_renewed_total", "quota slices renewed: more bytes or a later expiry",
            leases_renewed.load());
    counter("leases_denied_total", "quota slice asks refused: nothing left to lease",
            leases_denied.load());
    counter("leases_expired_total",
            "expired quota slices deleted (a gateway that stopped renewing)",
            leases_expired.load());
    counter("leases_lapsed_total", "quota slices given back by this gateway (subscriber idle)",
            leases_lapsed.load());
    counter("lease_epochs_total",
            "kernel quotas restarted from zero (used up before a raise, or short of the ceiling)",
            lease_epochs.load());
    out << "# TYPE ctquota_leases_held gauge\nctquota_leases_held " << leases_held.load() << "\n";
    counter("webhooks_delivered_total", "webhook deliveries answered 2xx",
            webhooks_delivered.load());
    counter("webhook_failures_total", "webhook delivery attempts that failed (retried)",
            webhook_failures.load());
    out << "# TYPE ctquota_flows_tracked gauge\nctquota_flows_tracked " << flows_tracked.load()
        << "\n";
    render_histogram(out, "ctquota_flush_seconds", "database flush latency", flush_latency,
                     flush_latency_us_sum);
    render_histogram(out, "ctquota_flush_to_kernel_seconds",
                     "from a flush's commit to the kernel enforcing the states it changed",
                     kernel_latency, kernel_latency_us_sum);
    out << "# TYPE ctquota_subscribers_throttled gauge\nctquota_subscribers_throttled "
        << subscribers_throttled.load() << "\n";
    out << "# TYPE ctquota_subscriber_bindings gauge\nctquota_subscriber_bindings "
        << subscriber_bindings.load() << "\n";
    out << "# TYPE ctquota_subscribers_blocked gauge\nctquota_subscribers_blocked "
        << subscribers_blocked.load() << "\n";
    out << "# HELP ctquota_flowtables flowtables in the ruleset (their flows bypass "
           "enforcement)\n# TYPE ctquota_flowtables gauge\nctquota_flowtables "
        << flowtables.load() << "\n";
    out << "# HELP ctquota_flowtables_uncounted flowtables without the counter flag (their "
           "bytes are not billed)\n# TYPE ctquota_flowtables_uncounted gauge\n"
           "ctquota_flowtables_uncounted "
        << flowtables_uncounted.load() << "\n";
    out << "# TYPE ctquota_reader_running gauge\nctquota_reader_running "
        << (reader_running.load() ? 1 : 0) << "\n";
    out << "# TYPE ctquota_database_ok gauge\nctquota_database_ok " << (database_ok.load() ? 1 : 0)
        << "\n";
    render_drops(out);
    counter("journal_records_total", "conntrack events journaled before leaving the socket",
            journal_records.load());
    counter("journal_bytes_total", "bytes written to the event journal", journal_bytes.load());
    counter("journal_errors_total", "event journal writes that failed (disk full, I/O error)",
            journal_errors.load());
    counter("journal_replayed_total", "journaled events replayed at start-up",
            journal_replayed.load());
    counter("journal_spills_total",
            "pending totals spilled to the journal's directory during a database outage",
            journal_spills.load());
    counter("sample_times_implausible_total",
            "samples counted at processing time: their own time was ahead or far behind",
            sample_times_implausible.load());
    out << "# TYPE ctquota_journal_disk_bytes gauge\nctquota_journal_disk_bytes "
        << journal_disk_bytes.load() << "\n";
    http.render(out);
    http_connections.render(out);
    records.render(out);
    return out.str();
}

}  // namespace ctquota::metrics
