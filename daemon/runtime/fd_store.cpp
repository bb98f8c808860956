#include "runtime/fd_store.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

namespace ctquota::runtime {
namespace {

constexpr int kFirstPassedFd = 3;  // SD_LISTEN_FDS_START

std::optional<long> env_number(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
        return std::nullopt;
    }
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < 0) {
        return std::nullopt;
    }
    return n;
}

std::vector<std::string> split_names(const char* names) {
    std::vector<std::string> out;
    if (names == nullptr) {
        return out;
    }
    std::string_view rest(names);
    while (true) {
        const auto colon = rest.find(':');
        out.emplace_back(rest.substr(0, colon));
        if (colon == std::string_view::npos) {
            return out;
        }
        rest.remove_prefix(colon + 1);
    }
}

}  // namespace

std::map<std::string, int> take_passed_fds() {
    std::map<std::string, int> fds;
    const auto pid = env_number("LISTEN_PID");
    const auto count = env_number("LISTEN_FDS");
    const auto names = split_names(std::getenv("LISTEN_FDNAMES"));
    if (pid && count && *pid == static_cast<long>(::getpid())) {
        for (long i = 0; i < *count; ++i) {
            const int fd = kFirstPassedFd + static_cast<int>(i);
            ::fcntl(fd, F_SETFD, FD_CLOEXEC);
            const auto idx = static_cast<std::size_t>(i);
            const std::string name =
                idx < names.size() && !names[idx].empty() ? names[idx] : "unknown";
            if (!fds.emplace(name, fd).second) {
                ::close(fd);  // a second one of the same name: the first wins
            }
        }
    }
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_FDNAMES");
    return fds;
}

bool store_fd(int fd, const std::string& name) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (path == nullptr || (path[0] != '/' && path[0] != '@')) {
        errno = ENOENT;
        return false;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::size_t len = std::strlen(path);
    if (len >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return false;
    }
    std::memcpy(addr.sun_path, path, len);
    if (path[0] == '@') {
        addr.sun_path[0] = '\0';  // abstract namespace
    }
    const int sock = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        return false;
    }
    std::string message = "FDSTORE=1\nFDNAME=" + name;
    iovec iov{message.data(), message.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_name = &addr;
    msg.msg_namelen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    const bool sent = ::sendmsg(sock, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(message.size());
    const int err = errno;
    ::close(sock);
    errno = err;
    return sent;
}

}  // namespace ctquota::runtime
