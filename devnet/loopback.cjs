// Preload (`node --require ./loopback.cjs ...`) that keeps every TCP server the
// process opens on the loopback interface. Alto always listens on 0.0.0.0 and
// has no flag to change that; the devnet must not be reachable from outside.
//
// A listen() on a wildcard or missing host is rewritten to 127.0.0.1; a listen()
// on an explicit non-wildcard host, a Unix socket path or a handle is left alone.
"use strict";

const net = require("node:net");

const LOOPBACK = "127.0.0.1";
const WILDCARDS = new Set(["", "0.0.0.0", "::", "[::]", "::0"]);

function isWildcard(host) {
  return host === undefined || host === null || WILDCARDS.has(String(host));
}

const originalListen = net.Server.prototype.listen;

net.Server.prototype.listen = function listenOnLoopback(...args) {
  const first = args[0];
  if (first !== null && typeof first === "object" && !Array.isArray(first)) {
    // listen(options[, backlog][, callback]); options may carry port/host, path or a handle.
    const isTcpOptions = first.path === undefined && first.handle === undefined
      && first._handle === undefined && first.fd === undefined;
    if (isTcpOptions && isWildcard(first.host)) {
      args[0] = { ...first, host: LOOPBACK };
      if ("ipv6Only" in args[0]) delete args[0].ipv6Only;
    }
  } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))
             || first === undefined || typeof first === "function") {
    // listen([port][, host][, backlog][, callback])
    if (typeof first === "function" || first === undefined) {
      const rest = first === undefined ? args.slice(1) : args;
      args = [0, LOOPBACK, ...rest];
    } else if (typeof args[1] === "string") {
      if (isWildcard(args[1])) args[1] = LOOPBACK;
    } else {
      args.splice(1, 0, LOOPBACK);
    }
  }
  return originalListen.apply(this, args);
};
