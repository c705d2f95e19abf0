// The whole op suite, shared by the Deno, Node and Chromium runners. Each file registers its
// cases with test() from ../lib/harness.ts when imported.
import "./elementwise.ts";
import "./reduce.ts";
import "./layout.ts";
import "./matmul.ts";
import "./matmul-units.ts";
import "./matmul-units-emulated.ts";
import "./nn.ts";
import "./attention.ts";
import "./attention-chunked.ts";
import "./attention-units.ts";
import "./attention-units-emulated.ts";
import "./attention-decode.ts";
import "./runtime.ts";
import "./errors.ts";
import "./hardening.ts";
import "./property.ts";
import "./long-runs.ts";
import "./training.ts";
import "./optim.ts";
import "./mixed-precision.ts";
import "./sparse.ts";
import "./spmm-tune.ts";
import "./sddmm-tune.ts";
import "./slope.ts";
import "./adapters.ts";
import "./profiler.ts";
import "./structure.ts";
import "./checkpoint.ts";
import "./generate.ts";
import "./demo.ts";
import "./cli.ts";
import "./compile.ts"; // checks every variant compiled above
import "./device-loss.ts"; // last: destroys the device on purpose

export { cases, supported, type TestCase } from "../lib/harness.ts";
