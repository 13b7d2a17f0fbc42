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

export function failing<T extends object>(target: T, methods: string[], fault: FaultSwitch): T {
  return new Proxy(target, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (fault.on && (methods.includes("*") || methods.includes(String(property)))) {
          fault.refused++;
          // thrown synchronously: right for sync methods (D1 prepare), and an awaiting
          // caller of an async one sees the same rejection
          throw new Error(`injected ${String(property)} failure`);
        }
        return (value as (...a: unknown[]) => unknown).apply(object, args);
      };
    },
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
  const binding = new Proxy(target, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        calls[String(property)] = (calls[String(property)] ?? 0) + 1;
        return (value as (...a: unknown[]) => unknown).apply(object, args);
      };
    },
  });
  return { binding, calls };
}
