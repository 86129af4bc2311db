// Shared helpers for the socket code: address parsing, option reading and
// Node-style system errors.
#pragma once

#include <napi.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace dnstp {

// One endpoint in the form every syscall wants, plus the family the caller
// asked for (4 or 6), so errors can echo the caller's own spelling.
struct SocketEndpoint {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = 0;  // AF_INET or AF_INET6
  std::string text;  // the address as the caller wrote it
  int port = 0;
};

// Returns false when `text` is neither a dotted quad nor an IPv6 literal.
bool ParseEndpoint(const std::string& text, int port, SocketEndpoint* out);

// "192.0.2.1" / "2001:db8::1" from raw network-order bytes.
std::string FormatRawAddress(int family, const uint8_t* bytes);

// Node's ErrnoException shape: message "<syscall> <CODE> <address>:<port>",
// properties errno (negative), code, syscall and, when given, address/port.
Napi::Error MakeSystemError(Napi::Env env, int err, const char* syscall,
                            const std::string& address = std::string(),
                            int port = -1);

// Node's ERR_INVALID_IP_ADDRESS, so callers can switch on err.code.
Napi::Error MakeInvalidAddressError(Napi::Env env, const std::string& address);

// Option readers: a missing/undefined key yields `fallback`; a present key
// of the wrong type or outside [min, max] throws a RangeError/TypeError
// naming the option.
int32_t ReadIntOption(const Napi::Object& options, const char* name,
                      int32_t fallback, int32_t min, int32_t max);
bool ReadBoolOption(const Napi::Object& options, const char* name,
                    bool fallback);
std::string ReadAddressOption(const Napi::Object& options);

// setsockopt for an int flag; returns 0 or errno.
int SetIntOption(int fd, int level, int name, int value);

// Applies the options common to the UDP and TCP listeners (transparency,
// address reuse, dual stack). Returns 0 or the errno of the failing
// setsockopt.
struct ListenerSocketOptions {
  bool transparent = true;
  bool reuseAddr = true;
  bool reusePort = false;
  bool ipv6Only = false;
  // Socket buffer sizes in bytes; 0 keeps the kernel default.
  int recvBufferBytes = 0;
  int sendBufferBytes = 0;
};
int ApplyListenerOptions(int fd, int family, const ListenerSocketOptions& options);

}  // namespace dnstp
