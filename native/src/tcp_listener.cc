#include "tcp_listener.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "net_util.h"

namespace dnstp {

Napi::Value OpenTransparentTcpListener(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    throw Napi::TypeError::New(env, "openTransparentTcpListener(options): options must be an object");
  }
  Napi::Object options = info[0].As<Napi::Object>();
  std::string address = ReadAddressOption(options);
  int port = ReadIntOption(options, "port", -1, 0, 65535);
  if (port < 0) throw Napi::TypeError::New(env, "The \"port\" option is required");
  int backlog = ReadIntOption(options, "backlog", 511, 1, 65535);
  ListenerSocketOptions listener;
  listener.transparent = ReadBoolOption(options, "transparent", true);
  listener.reuseAddr = ReadBoolOption(options, "reuseAddr", true);
  listener.reusePort = ReadBoolOption(options, "reusePort", false);
  listener.ipv6Only = ReadBoolOption(options, "ipv6Only", false);

  SocketEndpoint endpoint;
  if (!ParseEndpoint(address, port, &endpoint)) throw MakeInvalidAddressError(env, address);

  // CLOEXEC: the fd is handed to libuv, never meant for child processes.
  int fd = socket(endpoint.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw MakeSystemError(env, errno, "socket", address, port);
  const char* failedSyscall = nullptr;
  int err = ApplyListenerOptions(fd, endpoint.family, listener);
  if (err != 0) {
    failedSyscall = "setsockopt";
  } else if (bind(fd, reinterpret_cast<const sockaddr*>(&endpoint.storage), endpoint.length) != 0) {
    err = errno;
    failedSyscall = "bind";
  } else if (listen(fd, backlog) != 0) {
    err = errno;
    failedSyscall = "listen";
  }
  if (failedSyscall != nullptr) {
    ::close(fd);
    throw MakeSystemError(env, err, failedSyscall, address, port);
  }
  return Napi::Number::New(env, fd);
}

}  // namespace dnstp
