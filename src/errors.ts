// Typed errors of webslope. Every error names what failed and how to fix it, so a user sees a
// clear message instead of a WebGPU validation crash or a silent NaN.

/** Base class: `instanceof WebslopeError` catches every error this library raises on purpose. */
export class WebslopeError extends Error {
  override name = "WebslopeError";
}

/** No WebGPU in this runtime (or no adapter). The message says how to enable it. */
export class WebGPUUnavailableError extends WebslopeError {
  override name = "WebGPUUnavailableError";
  constructor(readonly runtime: string, detail: string) {
    super(`WebGPU is not available in ${runtime}: ${detail}`);
  }
}

/** The GPU device was lost (driver reset, tab backgrounded, destroy()). Call init() again. */
export class DeviceLostError extends WebslopeError {
  override name = "DeviceLostError";
  constructor(reason: string, message: string) {
    super(`the WebGPU device was lost (${reason}${message ? `: ${message}` : ""}); ` +
      "tensors made on it are gone; call init() again and rebuild them");
  }
}

/** A WebGPU validation or out-of-memory error reported by the device after a launch. */
export class WebGPUError extends WebslopeError {
  override name = "WebGPUError";
}

/** Shapes that do not fit the op. The message names the op and every shape involved. */
export class ShapeError extends WebslopeError {
  override name = "ShapeError";
  constructor(readonly op: string, detail: string) {
    super(`${op}: ${detail}`);
  }
}

/** A dtype the op does not accept, or two operands of different dtypes. */
export class DTypeError extends WebslopeError {
  override name = "DTypeError";
  constructor(readonly op: string, detail: string) {
    super(`${op}: ${detail}`);
  }
}

/**
 * A value the op does not accept: an option out of its range, a non-finite or non-integer size,
 * a token id outside the vocabulary. The message names the op, the value and the accepted range.
 */
export class ValueError extends WebslopeError {
  override name = "ValueError";
  constructor(readonly op: string, detail: string) {
    super(`${op}: ${detail}`);
  }
}

/** A tensor used after dispose() (directly, or by tidy() at the end of its scope). */
export class DisposedTensorError extends WebslopeError {
  override name = "DisposedTensorError";
  constructor(op: string, what: string) {
    super(`${op}: ${what} was disposed; keep it alive (return it from tidy(), or do not call dispose() before this use)`);
  }
}

/** A buffer over the adapter's limits (storage binding size, buffer size, workgroup counts). */
export class ResourceLimitError extends WebslopeError {
  override name = "ResourceLimitError";
  constructor(readonly op: string, detail: string) {
    super(`${op}: ${detail}`);
  }
}

/** Misuse of autograd: backward on a non-scalar without a gradient, twice through a freed graph. */
export class AutogradError extends WebslopeError {
  override name = "AutogradError";
}

/** A checkpoint that cannot be written or read. A failed load changes nothing. */
export class CheckpointError extends WebslopeError {
  override name = "CheckpointError";
}

/** Training produced a NaN or infinite loss. Names the step; the message says what to try. */
export class NonFiniteLossError extends WebslopeError {
  override name = "NonFiniteLossError";
  constructor(readonly step: number, readonly loss: number, message: string) {
    super(message);
  }
}

/** Shapes formatted the same way in every message: [2, 3]. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
