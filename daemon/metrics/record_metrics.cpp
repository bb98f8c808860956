#include "metrics/record_metrics.hpp"

namespace ctquota::metrics {
namespace {

// A label value as the Prometheus text format wants it.
std::string escape_label(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (const char c : s) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

void counter(std::ostream& out, const char* name, const char* help, std::uint64_t v) {
    out << "# HELP ctquota_" << name << " " << help << "\n# TYPE ctquota_" << name
        << " counter\nctquota_" << name << " " << v << "\n";
}

}  // namespace

void SinkMetrics::set_last_error(std::string message, std::int64_t unix_seconds) {
    std::lock_guard lock(mu_);
    last_error_ = std::move(message);
    last_error_at_ = unix_seconds;
}

void SinkMetrics::render(std::ostream& out) const {
    const std::string label = std::string("{sink=\"") + name_ + "\"}";
    out << "ctquota_sink_records_written_total" << label << " " << written.load() << "\n";
    out << "ctquota_sink_records_dropped_total" << label << " " << dropped.load() << "\n";
    out << "ctquota_sink_queue_records" << label << " " << queued.load() << "\n";
    out << "ctquota_sink_errors_total" << label << " " << errors.load() << "\n";
    std::lock_guard lock(mu_);
    out << "ctquota_sink_last_error_timestamp_seconds" << label << " " << last_error_at_ << "\n";
    if (last_error_at_ != 0) {
        out << "ctquota_sink_last_error{sink=\"" << name_ << "\",error=\""
            << escape_label(last_error_) << "\"} 1\n";
    }
}

void RecordMetrics::render(std::ostream& out) const {
    if (!flowlog.enabled && !ipfix.enabled) {
        return;
    }
    counter(out, "flow_records_final_total", "flow records of ended connections",
            final_records.load());
    counter(out, "flow_records_interim_total", "interim flow records of open connections",
            interim_records.load());
    out << "# TYPE ctquota_flow_records_remembered gauge\nctquota_flow_records_remembered "
        << remembered.load() << "\n";
    out << "# HELP ctquota_sink_records_written_total records a sink wrote\n"
           "# TYPE ctquota_sink_records_written_total counter\n"
           "# HELP ctquota_sink_records_dropped_total records a sink dropped (queue full, or "
           "unwritten at exit)\n# TYPE ctquota_sink_records_dropped_total counter\n"
           "# TYPE ctquota_sink_queue_records gauge\n"
           "# TYPE ctquota_sink_errors_total counter\n"
           "# TYPE ctquota_sink_last_error_timestamp_seconds gauge\n"
           "# HELP ctquota_sink_last_error the last error of a sink (its message as a label)\n"
           "# TYPE ctquota_sink_last_error gauge\n";
    for (const auto* sink : {&flowlog, &ipfix}) {
        if (sink->enabled) {
            sink->render(out);
        }
    }
    if (ipfix.enabled) {
        counter(out, "ipfix_messages_total", "IPFIX messages sent (all collectors)",
                ipfix_messages.load());
        counter(out, "ipfix_template_messages_total", "IPFIX messages that carried the templates",
                ipfix_template_sets.load());
        counter(out, "ipfix_send_errors_total", "IPFIX messages the kernel refused to send",
                ipfix_send_errors.load());
    }
    if (flowlog.enabled) {
        counter(out, "flowlog_partitions_dropped_total",
                "flow log day partitions dropped by retention", flowlog_partitions_dropped.load());
    }
}

}  // namespace ctquota::metrics
