// One catalogue of the errors this program raises on purpose. Each carries a stable `code`.

export class DnsTproxyError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The configuration is unusable; the message names the key and line. */
export class ConfigError extends DnsTproxyError {
  constructor(message: string, readonly file?: string, readonly line?: number, readonly keyPath?: string) {
    super(message, 'ERR_CONFIG');
  }
}

/** A listener could not be opened (errno fields come from the native layer). */
export class ListenError extends DnsTproxyError {
  constructor(message: string, readonly address: string, readonly cause?: unknown) {
    super(message, 'ERR_LISTEN');
  }
}

export class UpstreamConfigError extends DnsTproxyError {
  constructor(message: string) { super(message, 'ERR_UPSTREAM_CONFIG'); }
}
