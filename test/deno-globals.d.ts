// The few Deno globals the Deno runners use, so `tsc` can check them without Deno's own types.
declare namespace Deno {
  const version: { deno: string };
  const args: string[];
  function test(t: { name: string; ignore?: boolean; sanitizeOps?: boolean; sanitizeResources?: boolean; fn: () => unknown }): void;
  function exit(code?: number): never;
  function readTextFile(path: string): Promise<string>;
  function writeTextFile(path: string, data: string): Promise<void>;
}
