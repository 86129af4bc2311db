#pragma once

#include <napi.h>

namespace dnstp {

// Registers TransparentUdpSocket on `exports` and returns its constructor so
// the addon instance can keep it per environment.
Napi::Function DefineTransparentUdpSocket(Napi::Env env);

}  // namespace dnstp
