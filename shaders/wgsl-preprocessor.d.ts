// Types for the untyped npm package wgsl-preprocessor (a template tag with #if / #elif / #else / #endif).
declare module "wgsl-preprocessor/wgsl-preprocessor.js" {
  export function wgsl(strings: TemplateStringsArray, ...values: unknown[]): string;
}
