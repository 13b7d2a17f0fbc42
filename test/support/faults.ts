/**
 * Fault injection: wraps a real binding so that the named methods fail while `switch.on` is
 * true, and behave exactly like the real binding otherwise. No hand-written fakes.
 */
export interface FaultSwitch {
  on: boolean;
  /** how many calls were refused */
  refused: number;
}

export function faultSwitch(on = true): FaultSwitch {
  return { on, refused: 0 };
}

/**
 * `target` with every method call handed to `call`: the method's name, its arguments, and
 * `real`, which makes the call on the real binding. Other properties read through unchanged.
 */
export function intercepting<T extends object>(
  target: T,
  call: (method: string, args: unknown[], real: () => unknown) => unknown,
): T {
  return new Proxy(target, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      if (typeof value !== "function") return value;
      const method = value as (...a: unknown[]) => unknown;
      return (...args: unknown[]) => call(String(property), args, () => method.apply(object, args));
    },
  });
}

export function failing<T extends object>(target: T, methods: string[], fault: FaultSwitch): T {
  return intercepting(target, (method, _args, real) => {
    if (fault.on && (methods.includes("*") || methods.includes(method))) {
      fault.refused++;
      // thrown synchronously: right for sync methods (D1 prepare), and an awaiting
      // caller of an async one sees the same rejection
      throw new Error(`injected ${method} failure`);
    }
    return real();
  });
}

/** A Durable Object namespace whose stubs fail every call while the switch is on. */
export function failingNamespace<T extends DurableObjectNamespace>(
  namespace: T,
  fault: FaultSwitch,
): T {
  return new Proxy(namespace, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      if (property !== "get" || typeof value !== "function") {
        return typeof value === "function"
          ? (value as (...a: unknown[]) => unknown).bind(object)
          : value;
      }
      return (...args: unknown[]) => {
        const stub = (value as (...a: unknown[]) => object).apply(object, args);
        return failing(stub, ["*"], fault);
      };
    },
  });
}

/** Wraps a real binding and counts calls per method name, changing nothing else. */
export function counting<T extends object>(
  target: T,
): { binding: T; calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  const binding = intercepting(target, (method, _args, real) => {
    calls[method] = (calls[method] ?? 0) + 1;
    return real();
  });
  return { binding, calls };
}
