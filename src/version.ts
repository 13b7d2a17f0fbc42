/** Keygate's version, reported by `GET /_keygate/health`. */
export const VERSION = "0.1.0";
