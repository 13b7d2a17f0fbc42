/**
 * Exit codes of the `keygate` command: 0 success, 1 a failure (an API error, a network error,
 * a failed check, a key that does not verify, a wait that timed out), 2 a usage error (bad
 * arguments or a missing setting), 130 interrupted.
 */
export const EXIT = { ok: 0, failure: 1, usage: 2, interrupted: 130 } as const;

/** An error the CLI reports as one message (plus detail lines) and an exit code, no stack. */
export class CliError extends Error {
  readonly exitCode: number;
  readonly details: string[];
  constructor(message: string, options: { exitCode?: number; details?: string[] } = {}) {
    super(message);
    this.name = "CliError";
    this.exitCode = options.exitCode ?? EXIT.failure;
    this.details = options.details ?? [];
  }
}

/** Arguments or settings the command cannot run with. */
export class UsageError extends CliError {
  constructor(message: string, details: string[] = []) {
    super(message, { exitCode: EXIT.usage, details });
    this.name = "UsageError";
  }
}

/** An `application/problem+json` answer of Keygate (its codes: src/errors.ts). */
export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  code?: string;
  requestId?: string;
  errors?: { path: string; message: string }[];
}

/** Keygate answered with an error status. */
export class ApiError extends CliError {
  readonly status: number;
  readonly problem: Problem;
  constructor(problem: Problem, hint?: string) {
    const code = problem.code ?? `http_${problem.status}`;
    const detail = problem.detail ?? problem.title ?? "no detail";
    const details = [
      // the detail names the first failing field; list them all when there are more
      ...(problem.errors && problem.errors.length > 1
        ? problem.errors.map((e) => `  ${e.path || "(root)"}: ${e.message}`)
        : []),
      ...(problem.requestId ? [`  request id: ${problem.requestId}`] : []),
      ...(hint ? [hint] : []),
    ];
    super(`${code} (${problem.status}): ${detail}`, { details });
    this.name = "ApiError";
    this.status = problem.status;
    this.problem = problem;
  }
}

/** Keygate could not be reached at all. */
export class NetworkError extends CliError {
  readonly url: string;
  constructor(method: string, url: string, reason: string, hint: string) {
    super(`${method} ${url} failed: ${reason}`, { details: [hint] });
    this.name = "NetworkError";
    this.url = url;
  }
}
