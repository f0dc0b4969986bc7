// Preloaded by bench/targets.py with `node --import`: binds Portkey's gateway to 127.0.0.1.
//
// Portkey's build/start-server.js calls @hono/node-server's serve({fetch, port}) with no
// hostname, and reads no host from its arguments (only --port=N and --headless) nor from
// the environment, so Node listens on every interface (::, dual stack). This makes every
// server.listen() that names no host listen on 127.0.0.1 instead; nothing else changes.
import net from "node:net";

const listen = net.Server.prototype.listen;
const LOOPBACK = "127.0.0.1";

net.Server.prototype.listen = function (...args) {
  const [first, second] = args;
  const isPort = typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first));
  if (isPort && (second === undefined || second === null)) {
    args[1] = LOOPBACK; // listen(port) or listen(port, undefined, callback)
  } else if (isPort && typeof second === "function") {
    args.splice(1, 0, LOOPBACK); // listen(port, callback)
  } else if (first && typeof first === "object" && !("fd" in first) && !("path" in first) && !first.host) {
    args[0] = { ...first, host: LOOPBACK }; // listen({port})
  }
  return listen.apply(this, args);
};
