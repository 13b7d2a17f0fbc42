/**
 * What Keygate and the origins behind it agree on about `X-Keygate-Assertion`. Plain
 * JavaScript with no imports, so that the Worker and the Node helper for origins
 * (`keygate/origin`) read the same values.
 */

/** The request header that carries the assertion to the origin. */
export const ASSERTION_HEADER = "X-Keygate-Assertion";

/** `typ` header of an origin assertion: never accepted as an access token, nor the reverse. */
export const ASSERTION_TYPE = "keygate-assertion+jwt";

/** How long an assertion lives, in seconds. */
export const ASSERTION_TTL_SECONDS = 120;

/** The signature algorithms Keygate signs with; a verifier accepts no other. */
export const SIGNING_ALGORITHMS = ["ES256", "EdDSA"];

/** Clock skew allowed on `exp` and `nbf`, in seconds, by Keygate and by the helper. */
export const CLOCK_TOLERANCE_SECONDS = 30;

/** The longest assertion or access token read at all; a longer one is refused unparsed. */
export const MAX_JWT_LENGTH = 4096;
