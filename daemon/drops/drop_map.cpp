#include "drops/drop_map.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <filesystem>

#include "drops/drop_object.hpp"
#include "drops/drop_record.hpp"

namespace ctquota::drops {
namespace {

constexpr long kBpffsMagic = 0xcafe4a11;
constexpr const char* kPins[] = {"config", "drops", "stats", "link"};

std::string errno_text(int err) {
    return std::strerror(err);
}

// libbpf's own messages go to the debug log (warnings to warn).
int libbpf_log(libbpf_print_level level, const char* format, va_list args) {
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, format, args);
    std::string line(buf);
    while (!line.empty() && line.back() == '\n') {
        line.pop_back();
    }
    if (level == LIBBPF_WARN) {
        spdlog::warn("libbpf: {}", line);
    } else {
        spdlog::debug("libbpf: {}", line);
    }
    return 0;
}

std::uint32_t own_netns() {
    struct stat st {};
    if (stat("/proc/self/ns/net", &st) != 0) {
        throw DropMapError("cannot read /proc/self/ns/net: " + errno_text(errno));
    }
    return static_cast<std::uint32_t>(st.st_ino);
}

// FNV-1a of the embedded object: which program recorded into pinned maps.
std::uint64_t object_hash() {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (std::size_t i = 0; i < kDropObjectSize; ++i) {
        h = (h ^ kDropObject[i]) * 0x100000001b3ull;
    }
    return h;
}

bool is_bpffs(const std::string& dir) {
    struct statfs fs {};
    return statfs(dir.c_str(), &fs) == 0 && fs.f_type == kBpffsMagic;
}

struct MapShape {
    std::uint32_t type, key_size, value_size, max_entries;
};

bool has_shape(int fd, const MapShape& want) {
    bpf_map_info info{};
    std::uint32_t len = sizeof info;
    return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type == want.type &&
           info.key_size == want.key_size && info.value_size == want.value_size &&
           info.max_entries == want.max_entries;
}

MapShape drops_shape(std::uint32_t max_flows) {
    return {BPF_MAP_TYPE_LRU_HASH, sizeof(ctq_drop_key), sizeof(ctq_drop_value), max_flows};
}
constexpr MapShape kStatsShape{BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, CTQ_STAT_COUNT};
constexpr MapShape kConfigShape{BPF_MAP_TYPE_ARRAY, 4, sizeof(ctq_drop_config), 1};

void close_fd(int& fd) {
    if (fd >= 0) {
        close(fd);
        fd = -1;
    }
}

}  // namespace

std::unique_ptr<DropMap> DropMap::open(const DropConfig& config) {
    libbpf_set_print(libbpf_log);
    std::unique_ptr<DropMap> m(new DropMap());
    m->max_flows_ = config.max_flows;
    const auto netns = own_netns();
    const auto hash = object_hash();
    m->open_pinned(config, netns, hash);
    if (!m->reused_) {
        m->load(config, netns, hash);
        m->attach();
    }
    return m;
}

DropMap::~DropMap() {
    if (link_ != nullptr) {
        bpf_link__destroy(link_);  // detaches only when no pin holds the link
    }
    if (object_ != nullptr) {
        bpf_object__close(object_);  // closes the maps' fds it owns
    } else {
        close_fd(drops_fd_);
        close_fd(stats_fd_);
        close_fd(config_fd_);
    }
}

// Decides where to pin, and reuses what is pinned when it is ours.
void DropMap::open_pinned(const DropConfig& config, std::uint32_t netns, std::uint64_t hash) {
    if (config.pin_dir.empty()) {
        return;
    }
    std::error_code ec;
    std::filesystem::create_directories(config.pin_dir, ec);
    if (!is_bpffs(config.pin_dir.string())) {
        spdlog::warn(
            "drops: {} is not on a bpffs (mount -t bpf bpf {}): the program is not pinned, so "
            "drops while ctquotad is down are not recorded and are billed",
            config.pin_dir.string(), config.pin_dir.string());
        return;
    }
    dir_ = config.pin_dir.string();
    pinned_ = true;
    reused_ = reuse_all(netns, hash, config.max_flows);
}

bool DropMap::reuse_all(std::uint32_t netns, std::uint64_t hash, std::uint32_t max_flows) {
    for (const char* pin : kPins) {
        if (access((dir_ + "/" + pin).c_str(), F_OK) != 0) {
            return false;
        }
    }
    config_fd_ = bpf_obj_get((dir_ + "/config").c_str());
    drops_fd_ = bpf_obj_get((dir_ + "/drops").c_str());
    stats_fd_ = bpf_obj_get((dir_ + "/stats").c_str());
    ctq_drop_config cfg{};
    const std::uint32_t zero = 0;
    const bool ours =
        config_fd_ >= 0 && drops_fd_ >= 0 && stats_fd_ >= 0 &&
        has_shape(config_fd_, kConfigShape) && bpf_map_lookup_elem(config_fd_, &zero, &cfg) == 0 &&
        cfg.netns_inum == netns && cfg.object_hash == hash &&
        has_shape(drops_fd_, drops_shape(max_flows)) && has_shape(stats_fd_, kStatsShape);
    if (ours) {
        spdlog::info("drops: reusing the program and maps pinned in {}", dir_);
        return true;
    }
    // Kept for load(): the drops recorded for this namespace survive a new program.
    if (config_fd_ < 0 || cfg.netns_inum != netns) {
        close_fd(drops_fd_);
        close_fd(stats_fd_);
    }
    close_fd(config_fd_);
    return false;
}

void DropMap::load(const DropConfig& config, std::uint32_t netns, std::uint64_t hash) {
    object_ = bpf_object__open_mem(kDropObject, kDropObjectSize, nullptr);
    if (object_ == nullptr) {
        throw DropMapError("opening the BPF object failed: " + errno_text(errno));
    }
    bpf_map* drops = bpf_object__find_map_by_name(object_, "ctq_drops");
    bpf_map* stats = bpf_object__find_map_by_name(object_, "ctq_stats");
    bpf_map* cfg = bpf_object__find_map_by_name(object_, "ctq_config");
    bpf_map__set_max_entries(drops, config.max_flows);
    const bool keep_drops = drops_fd_ >= 0 && has_shape(drops_fd_, drops_shape(config.max_flows));
    const bool keep_stats = stats_fd_ >= 0 && has_shape(stats_fd_, kStatsShape);
    if (keep_drops) {
        bpf_map__reuse_fd(drops, drops_fd_);  // dups it
        spdlog::info("drops: a new program; the drops recorded in {}/drops are kept", dir_);
    }
    if (keep_stats) {
        bpf_map__reuse_fd(stats, stats_fd_);
    }
    close_fd(drops_fd_);
    close_fd(stats_fd_);
    if (pinned_) {
        for (const char* pin : kPins) {
            if ((keep_drops && std::strcmp(pin, "drops") == 0) ||
                (keep_stats && std::strcmp(pin, "stats") == 0) || std::strcmp(pin, "link") == 0) {
                continue;  // the link is replaced in attach()
            }
            unlink((dir_ + "/" + pin).c_str());
        }
    }
    if (bpf_object__load(object_) != 0) {
        const int err = errno;
        throw DropMapError("loading the BPF program failed: " + errno_text(err) +
                           (err == EPERM ? " (it needs CAP_BPF and CAP_PERFMON at start-up)" : ""));
    }
    drops_fd_ = bpf_map__fd(drops);
    stats_fd_ = bpf_map__fd(stats);
    config_fd_ = bpf_map__fd(cfg);
    const std::uint32_t zero = 0;
    const ctq_drop_config value{netns, 0, hash};
    if (bpf_map_update_elem(config_fd_, &zero, &value, BPF_ANY) != 0) {
        throw DropMapError("writing the BPF program's config failed: " + errno_text(errno));
    }
    if (pinned_) {
        if ((!keep_drops && bpf_map__pin(drops, (dir_ + "/drops").c_str()) != 0) ||
            (!keep_stats && bpf_map__pin(stats, (dir_ + "/stats").c_str()) != 0) ||
            bpf_map__pin(cfg, (dir_ + "/config").c_str()) != 0) {
            throw DropMapError("pinning the maps in " + dir_ + " failed: " + errno_text(errno));
        }
    }
}

// Replaces a pinned link: the old program stops before the new one starts,
// so no drop is recorded twice (one recorded by neither is billed).
void DropMap::attach() {
    const std::string link_pin = dir_ + "/link";
    if (pinned_) {
        unlink(link_pin.c_str());
    }
    bpf_program* prog = bpf_object__find_program_by_name(object_, "ctq_kfree_skb");
    link_ = bpf_program__attach(prog);
    if (link_ == nullptr) {
        throw DropMapError("attaching to the skb:kfree_skb tracepoint failed: " +
                           errno_text(errno));
    }
    if (pinned_ && bpf_link__pin(link_, link_pin.c_str()) != 0) {
        throw DropMapError("pinning the link in " + dir_ + " failed: " + errno_text(errno));
    }
    spdlog::info("drops: BPF program attached to skb:kfree_skb{}",
                 pinned_ ? ", pinned in " + dir_ : " (not pinned)");
}

bool DropMap::read_stats(DropStats& out) const {
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) {
        errno = -cpus;
        return false;
    }
    std::vector<std::uint64_t> per_cpu(static_cast<std::size_t>(cpus));
    std::uint64_t sums[CTQ_STAT_COUNT] = {};
    for (std::uint32_t i = 0; i < CTQ_STAT_COUNT; ++i) {
        if (bpf_map_lookup_elem(stats_fd_, &i, per_cpu.data()) != 0) {
            return false;
        }
        for (auto v : per_cpu) {
            sums[i] += v;
        }
    }
    out = DropStats{sums[CTQ_STAT_PACKETS], sums[CTQ_STAT_BYTES], sums[CTQ_STAT_MAP_FULL]};
    return true;
}

bool DropMap::read(std::vector<core::DropRecord>& out) const {
    out.clear();
    constexpr std::uint32_t kBatch = 256;
    std::vector<ctq_drop_key> keys(kBatch);
    std::vector<ctq_drop_value> values(kBatch);
    ctq_drop_key token{};  // the kernel's opaque batch position (a bucket for hash maps)
    bool first = true;
    while (true) {
        std::uint32_t count = kBatch;
        const int rc = bpf_map_lookup_batch(drops_fd_, first ? nullptr : &token, &token,
                                            keys.data(), values.data(), &count, nullptr);
        const int err = rc != 0 ? errno : 0;
        if (rc != 0 && err != ENOENT) {
            if (first && (err == EINVAL || err == ENOTSUP || err == ENOSPC)) {
                return read_one_by_one(out);
            }
            errno = err;
            return false;
        }
        first = false;
        for (std::uint32_t i = 0; i < count; ++i) {
            if (auto key = flow_key_of(keys[i])) {
                out.push_back(core::DropRecord{*key, dropped_of(values[i])});
            }
        }
        if (err == ENOENT) {
            return true;  // the end of the map
        }
    }
}

// For kernels or maps without batch lookups (and a bucket bigger than a batch).
bool DropMap::read_one_by_one(std::vector<core::DropRecord>& out) const {
    out.clear();
    ctq_drop_key key{};
    ctq_drop_key next{};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(drops_fd_, prev, &next) == 0) {
        ctq_drop_value value{};
        if (bpf_map_lookup_elem(drops_fd_, &next, &value) == 0) {
            if (auto k = flow_key_of(next)) {
                out.push_back(core::DropRecord{*k, dropped_of(value)});
            }
        }
        key = next;
        prev = &key;
    }
    return errno == ENOENT;
}

std::size_t DropMap::erase(const std::vector<core::FlowKey>& keys) const {
    std::size_t refused = 0;
    for (const auto& key : keys) {
        const ctq_drop_key k = kernel_key_of(key);
        if (bpf_map_delete_elem(drops_fd_, &k) != 0 && errno != ENOENT) {
            ++refused;
        }
    }
    return refused;
}

}  // namespace ctquota::drops
