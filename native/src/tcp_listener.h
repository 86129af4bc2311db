#pragma once

#include <napi.h>

namespace dnstp {

// openTransparentTcpListener({ address, port, backlog?, transparent?,
// reusePort?, ipv6Only? }) => fd, listening and non-blocking, for
// net.Server.listen({ fd }).
Napi::Value OpenTransparentTcpListener(const Napi::CallbackInfo& info);

}  // namespace dnstp
