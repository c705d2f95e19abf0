// Lifetime scopes: tidy() disposes the tensors made inside it except what it returns, and
// noGrad() turns off graph recording. Kept apart from Tensor so both stay small.
import { WebslopeError } from "./errors.ts";

export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

const scopes: Set<Disposable>[] = [];
let gradDisabled = 0;

/** Registers a new tensor with the innermost tidy() scope. */
export function track(t: Disposable): void {
  scopes[scopes.length - 1]?.add(t);
}

/** Removes a tensor from every open scope (it outlives them: params, .grad, optimizer state). */
export function keep<T extends Disposable>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collect(value: unknown, out: Set<unknown>, depth = 0): void {
  if (value === null || typeof value !== "object" || depth > 4) return;
  if ("dispose" in (value as object) && "isDisposed" in (value as object)) { out.add(value); return; }
  if (Array.isArray(value)) for (const v of value) collect(v, out, depth + 1);
  else if (value instanceof Map) for (const v of value.values()) collect(v, out, depth + 1);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, out, depth + 1);
}

/**
 * Runs fn and disposes every tensor it created that is not part of its result (tensors in a
 * returned array or plain object are kept too). Works with sync functions only, like TF.js:
 * an async fn would let its awaits escape the scope. When fn throws, everything it made is freed.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    // A throwing fn keeps nothing: free what it made, then rethrow.
    scopes.pop();
    for (const t of scope) if (!t.isDisposed) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    // The async rest of fn may still use what it made: hand those to the enclosing scope.
    for (const t of scope) scopes[scopes.length - 1]?.add(t);
    throw new WebslopeError("tidy(fn): fn must be synchronous (it returned a Promise); await outside tidy() and wrap only the synchronous part");
  }
  const kept = new Set<unknown>();
  collect(result, kept);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (kept.has(t)) parent?.add(t);
    else if (!t.isDisposed) t.dispose();
  }
  return result;
}

/** Runs fn with gradient recording off (like torch.no_grad()). */
export function noGrad<T>(fn: () => T): T {
  gradDisabled++;
  try {
    return fn();
  } finally {
    gradDisabled--;
  }
}

export function isGradEnabled(): boolean {
  return gradDisabled === 0;
}
