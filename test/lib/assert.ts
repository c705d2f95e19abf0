// Assertions that work in Deno, Node and browsers alike (no node:assert in a page).

export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

export function assertEquals<T>(actual: T, expected: T, msg = ""): void {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new AssertionError(`${msg ? msg + ": " : ""}expected ${e}, got ${a}`);
}

export interface CloseOptions {
  rtol?: number;
  atol?: number;
  msg?: string;
}

/** Elementwise |a - e| <= atol + rtol·|e|, with NaN never close. Reports the worst element. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, opts: CloseOptions = {}): void {
  const rtol = opts.rtol ?? 1e-5, atol = opts.atol ?? 1e-6;
  const pre = opts.msg ? opts.msg + ": " : "";
  if (actual.length !== expected.length) throw new AssertionError(`${pre}length ${actual.length} != expected ${expected.length}`);
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    const tol = atol + rtol * Math.abs(e);
    const err = Math.abs(a - e);
    if (Number.isNaN(a) !== Number.isNaN(e) || (!Number.isNaN(e) && !(err <= tol))) {
      const excess = Number.isNaN(err) ? Infinity : err / tol;
      if (worst < 0 || excess > worstExcess) { worst = i; worstExcess = excess; }
    }
  }
  if (worst >= 0) {
    throw new AssertionError(`${pre}element ${worst}: got ${actual[worst]}, expected ${expected[worst]} ` +
      `(rtol ${rtol}, atol ${atol}; ${Math.round(worstExcess * 10) / 10}× the tolerance)`);
  }
}

/** Runs fn (sync or async) and checks it throws an instance of `cls` whose message has each fragment. */
export async function assertThrows(
  fn: () => unknown,
  cls: abstract new (...args: never[]) => Error,
  ...fragments: string[]
): Promise<Error> {
  let err: unknown = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  if (!err) throw new AssertionError(`expected ${cls.name} to be thrown, nothing was`);
  if (!(err instanceof cls)) throw new AssertionError(`expected ${cls.name}, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
  for (const f of fragments) {
    if (!err.message.includes(f)) throw new AssertionError(`${cls.name} message lacks "${f}": ${err.message}`);
  }
  return err;
}
