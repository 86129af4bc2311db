#include "net_util.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <uv.h>

namespace dnstp {

bool ParseEndpoint(const std::string& text, int port, SocketEndpoint* out) {
  *out = SocketEndpoint();
  out->text = text;
  out->port = port;
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&out->storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    sin->sin_addr = v4;
    out->length = sizeof(sockaddr_in);
    out->family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out->storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    sin6->sin6_addr = v6;
    out->length = sizeof(sockaddr_in6);
    out->family = AF_INET6;
    return true;
  }
  return false;
}

std::string FormatRawAddress(int family, const uint8_t* bytes) {
  char buffer[INET6_ADDRSTRLEN] = {0};
  inet_ntop(family == 4 || family == AF_INET ? AF_INET : AF_INET6, bytes,
            buffer, sizeof(buffer));
  return buffer;
}

Napi::Error MakeSystemError(Napi::Env env, int err, const char* syscall,
                            const std::string& address, int port) {
  const char* code = uv_err_name(-err);
  std::string message = std::string(syscall) + " " + code;
  if (!address.empty()) {
    message += " " + address;
    if (port >= 0) message += ":" + std::to_string(port);
  }
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("code", Napi::String::New(env, code));
  error.Set("syscall", Napi::String::New(env, syscall));
  if (!address.empty()) error.Set("address", Napi::String::New(env, address));
  if (port >= 0) error.Set("port", Napi::Number::New(env, port));
  return error;
}

Napi::Error MakeInvalidAddressError(Napi::Env env, const std::string& address) {
  Napi::Error error =
      Napi::TypeError::New(env, "Invalid IP address: \"" + address + "\"");
  error.Set("code", Napi::String::New(env, "ERR_INVALID_IP_ADDRESS"));
  return error;
}

static Napi::Error MakeOptionError(Napi::Env env, const char* name,
                                   const std::string& expectation) {
  Napi::Error error = Napi::RangeError::New(
      env, std::string("The \"") + name + "\" option must be " + expectation);
  error.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  return error;
}

int32_t ReadIntOption(const Napi::Object& options, const char* name,
                      int32_t fallback, int32_t min, int32_t max) {
  Napi::Value value = options.Get(name);
  if (value.IsUndefined() || value.IsNull()) return fallback;
  std::string expectation = "an integer >= " + std::to_string(min) +
                            " and <= " + std::to_string(max);
  if (!value.IsNumber()) throw MakeOptionError(options.Env(), name, expectation);
  double number = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(number) || std::floor(number) != number || number < min ||
      number > max) {
    throw MakeOptionError(options.Env(), name, expectation);
  }
  return static_cast<int32_t>(number);
}

bool ReadBoolOption(const Napi::Object& options, const char* name,
                    bool fallback) {
  Napi::Value value = options.Get(name);
  if (value.IsUndefined() || value.IsNull()) return fallback;
  if (!value.IsBoolean()) {
    Napi::Error error = Napi::TypeError::New(
        options.Env(), std::string("The \"") + name + "\" option must be a boolean");
    error.Set("code", Napi::String::New(options.Env(), "ERR_INVALID_ARG_TYPE"));
    throw error;
  }
  return value.As<Napi::Boolean>().Value();
}

std::string ReadAddressOption(const Napi::Object& options) {
  Napi::Value value = options.Get("address");
  if (!value.IsString()) {
    Napi::Error error = Napi::TypeError::New(
        options.Env(), "The \"address\" option must be an IP address string");
    error.Set("code", Napi::String::New(options.Env(), "ERR_INVALID_ARG_TYPE"));
    throw error;
  }
  return value.As<Napi::String>().Utf8Value();
}

int SetIntOption(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) == 0 ? 0 : errno;
}

int ApplyListenerOptions(int fd, int family, const ListenerSocketOptions& options) {
  int err = options.reuseAddr ? SetIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1) : 0;
  if (err == 0 && options.reusePort) err = SetIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  // A burst of queries arrives faster than one event-loop turn drains it; the default ~208 KiB receive
  // buffer holds only a few hundred datagrams. The FORCE variants pass net.core.rmem_max with
  // CAP_NET_ADMIN (which TPROXY needs anyway); without it the kernel clamps the plain option.
  if (err == 0 && options.recvBufferBytes > 0 &&
      SetIntOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, options.recvBufferBytes) != 0) {
    SetIntOption(fd, SOL_SOCKET, SO_RCVBUF, options.recvBufferBytes);
  }
  if (err == 0 && options.sendBufferBytes > 0 &&
      SetIntOption(fd, SOL_SOCKET, SO_SNDBUFFORCE, options.sendBufferBytes) != 0) {
    SetIntOption(fd, SOL_SOCKET, SO_SNDBUF, options.sendBufferBytes);
  }
  if (err == 0 && family == AF_INET6) {
    // Set explicitly: the sysctl net.ipv6.bindv6only must not decide whether
    // a "::" listener also sees IPv4.
    err = SetIntOption(fd, IPPROTO_IPV6, IPV6_V6ONLY, options.ipv6Only ? 1 : 0);
  }
  if (err == 0 && options.transparent) {
    err = family == AF_INET ? SetIntOption(fd, SOL_IP, IP_TRANSPARENT, 1)
                            : SetIntOption(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
  }
  return err;
}

}  // namespace dnstp
