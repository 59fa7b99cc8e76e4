// version.mjs: makes an SDK client ask for a given protocol version. The SDK's Client always
// sends its own newest in initialize; this rewrites that one message on the transport, and
// records the version the server answered (the returned object's `version`).
export function askVersion(transport, version) {
  const answered = { version: undefined };
  const send = transport.send.bind(transport);
  transport.send = (msg, opts) => {
    if (msg.method === 'initialize') msg = { ...msg, params: { ...msg.params, protocolVersion: version } };
    return send(msg, opts);
  };
  // Protocol.connect installs onmessage before start(); wrap it there to see the reply first.
  const start = transport.start.bind(transport);
  transport.start = async () => {
    const inner = transport.onmessage;
    transport.onmessage = (m, extra) => {
      if (typeof m?.result?.protocolVersion === 'string') answered.version = m.result.protocolVersion;
      inner?.(m, extra);
    };
    return start();
  };
  return answered;
}
