// The global types that webslope's published declarations use, referenced from every entry's
// declarations (dist/types/<entry>.d.ts, written by vite.config.ts) so that a consumer project
// type-checks them with its default `lib` and without skipLibCheck:
// - WebGPU's interfaces (GPU, GPUDevice, GPUBuffer, ...) from @webgpu/types, a dependency of the
//   package (types only); TypeScript's own lib has none of them.
// - Symbol.dispose (Tensor implements `[Symbol.dispose]`, for `using`), which TypeScript's lib has
//   only with ESNext.Disposable / ES2025 targets. The declaration is the one @types/node ships; it
//   merges with TypeScript's when the consumer's lib has it.
/// <reference types="@webgpu/types" />

interface SymbolConstructor {
  readonly dispose: unique symbol;
}
