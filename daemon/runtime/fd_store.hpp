#pragma once
// The service manager's file descriptor store: systemd's documented
// FDSTORE protocol (sd_pid_notify_with_fds(3), sd_listen_fds(3)), written
// here instead of linking libsystemd for two messages, so gateways without
// systemd need nothing more. The event socket is handed to the store once,
// and handed back on every restart after a crash: what the kernel queued in
// it, and what it delivers while ctquotad is down, is still there.
//
// Store: a datagram to $NOTIFY_SOCKET ("FDSTORE=1\nFDNAME=<name>") carrying
// the descriptor (SCM_RIGHTS). Back: $LISTEN_PID (this process),
// $LISTEN_FDS (how many, from fd 3 on) and $LISTEN_FDNAMES (their names,
// colon-separated).

#include <map>
#include <string>

namespace ctquota::runtime {

// The descriptors passed to this process by name (close-on-exec set), taken
// once: the LISTEN_* variables are removed. Unnamed ones are "unknown".
std::map<std::string, int> take_passed_fds();

// Hands `fd` to the service manager's store under `name`. False when there
// is no service manager to ask ($NOTIFY_SOCKET unset) or sending failed
// (errno is kept for the message).
bool store_fd(int fd, const std::string& name);

}  // namespace ctquota::runtime
